#!/usr/bin/env bash
# Run the next GPU paper-setting study that has no page yet, within one 10-minute command, and write its page.
#
#   bash benchmarks/gpu_session.sh            # on a machine with one GPU, from the repository root
#
# The studies are studies/gpu-*.yaml in name order; "next" = the first without benchmarks/results/study-<name>.md.
# The study runs under `timeout` (STUDY_LIMIT_S, default 540 s: the 10-minute command less start-up and the page);
# its report is rewritten after every run that ends, so a study cut short still gives a page with its finished
# rows (marked "cut short"). The page is benchmarks/results/study-<name>.md (+ .png, by benchmarks/study_page.sh),
# headed with the device, the date and the command; with $OUT set (the lent machines), the page, its figure and the study's csv files are also
# copied there, as study folders do not come back. Data: $MEDSEG_DATA (default: the recipes' ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
LIMIT=${STUDY_LIMIT_S:-540}

next=""
for file in studies/gpu-*.yaml; do
    name=$(basename "$file" .yaml)
    if [ ! -f "benchmarks/results/study-$name.md" ]; then next=$file; break; fi
done
if [ -z "$next" ]; then echo "every GPU study has its page in benchmarks/results/"; exit 0; fi
name=$(basename "$next" .yaml)
jobs=$(grep -o 'gpu_session.sh runs it with --jobs [0-9]*' "$next" | grep -o '[0-9]*$' || echo 1)
device=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)
[ -n "$device" ] || { echo "no NVIDIA GPU visible: the GPU studies are sized for one H100/H200" >&2; exit 1; }
folder=$("$PY" -c "from medseg.studies import load_study; print(load_study('$next').study_dir)")

echo "study $next with --jobs $jobs on $device (limit ${LIMIT} s)"
"$PY" -m medseg study "$next" --dry-run
started=$(date -u +"%Y-%m-%d %H:%M UTC")
status=0
timeout --signal=INT --kill-after=20 "$LIMIT" "$PY" -m medseg study "$next" --jobs "$jobs" || status=$?
if [ ! -f "$folder/study.md" ]; then echo "no report was written (exit status $status)" >&2; exit 1; fi

bash benchmarks/study_page.sh "$next" "a lent $device" "$started" "$jobs" "$status"
page="benchmarks/results/study-$name.md"
if [ -n "${OUT:-}" ]; then
    cp "$page" "benchmarks/results/study-$name.png" "$folder/study.csv" "$folder/runs.csv" "$OUT/"
    mkdir -p "$OUT/logs" && cp "$folder"/logs/*.log "$OUT/logs/" 2>/dev/null || true
fi
exit "$status"
