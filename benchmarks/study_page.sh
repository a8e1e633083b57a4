#!/usr/bin/env bash
# Write the results page of a study that `medseg study` ran: benchmarks/results/study-<name>.md (+ .png), headed
# with the machine, the date, the command and the study file's header comments (setting, sizing, remaining
# differences from the papers), followed by the study's own report (study.md).
#
#   bash benchmarks/study_page.sh studies/cpu-glas.yaml "the 2-CPU development machine" "$(date -u +'%F %H:%M UTC')" 1
#
# Arguments: STUDY_FILE MACHINE STARTED [JOBS=1] [EXIT_STATUS=0]; a non-zero status marks the page "cut short".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
study=$1 machine=$2 started=$3 jobs=${4:-1} status=${5:-0}
name=$(basename "$study" .yaml)
folder=$("$PY" -c "from medseg.studies import load_study; print(load_study('$study').study_dir)")
[ -f "$folder/study.md" ] || { echo "no report in $folder: run medseg study $study first" >&2; exit 1; }
page="benchmarks/results/study-$name.md"
{
    echo "# Study $name"
    echo
    echo "Produced by \`medseg study $study --jobs $jobs\` on $machine, started $started;"
    echo "torch $("$PY" -c 'import torch; print(torch.__version__)')."
    if [ "$status" -ne 0 ]; then
        echo "**Cut short** (exit status $status): the tables hold the runs that finished; running the study again"
        echo "where its folder is kept resumes the rest."
    fi
    echo
    echo "Setting, sizing and remaining differences from the papers (the study file's header):"
    echo
    grep '^#' "$study" | sed 's/^# \{0,1\}/    /'
    echo
    sed -e '1d' -e "s|(study.png)|(study-$name.png)|" "$folder/study.md"
} > "$page"
cp "$folder/study.png" "benchmarks/results/study-$name.png"
echo "page: $page"
