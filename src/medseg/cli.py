"""The ``medseg`` command line."""

from __future__ import annotations

import json
import logging
import math
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

app = typer.Typer(
    help="medseg: train, evaluate and run U-shaped networks for 2D medical image segmentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)
errors = Console(stderr=True)

if TYPE_CHECKING:
    from medseg.evaluation import EvaluationOutput
    from medseg.studies import RunOutcome, StudyConfig

_LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
_verbose = False


def _quiet_lightning() -> None:
    """Keep Lightning's INFO start-up messages (GPU available, tips ...) out unless ``--verbose`` asked for them.

    Lightning sets its loggers to INFO, with a console handler of its own, when it is imported; the verbs that
    train call this after importing it.
    """
    if not _verbose:
        for name in _LIGHTNING_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


@app.callback()
def _setup(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show Lightning's own messages")] = False,
) -> None:
    """Share the CPUs politely and send medseg's progress messages to the console.

    Nothing heavy is imported here: ``medseg --help``, ``medseg models`` and ``medseg data check`` never load
    Lightning.
    """
    global _verbose
    from medseg.runtime import prepare_environment

    prepare_environment()  # before anything imports torch: OpenMP reads it once
    _verbose = verbose
    if errors.is_terminal:
        handler: logging.Handler = RichHandler(console=errors, show_time=False, show_path=False, show_level=False)
    else:  # log files and pipes get whole lines, not lines wrapped at 80 columns
        handler = logging.StreamHandler(sys.stderr)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s", force=True)
    logging.getLogger("medseg").setLevel(logging.INFO)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")  # lightning internals, not actionable


@contextmanager
def _user_errors() -> Iterator[None]:
    """Report medseg's own errors (bad config, bad data, unknown model) as one line and exit with status 2."""
    from rich.markup import escape

    from medseg.errors import MedsegError

    try:
        yield
    except MedsegError as error:
        errors.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@app.command()
def train(
    config: Annotated[
        Path | None, typer.Argument(help="experiment YAML, e.g. configs/unet-kvasir.yaml (not with --resume)")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Argument(help="dotted overrides: train.epochs=3 data.image_size=64")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            metavar="RUN_DIR",
            help="continue the interrupted run in RUN_DIR from its last checkpoint (only runtime overrides such as "
            "train.devices=2 are accepted)",
        ),
    ] = None,
    evaluate_after: Annotated[
        bool,
        typer.Option(
            "--evaluate/--no-evaluate",
            help="evaluate the best checkpoint on eval.split with eval.protocol after training (segmentation runs)",
        ),
    ] = True,
) -> None:
    """Train a configuration; writes runs/<name>/ (config, splits, checkpoints, metrics.csv, progress.png) and then
    evaluates it (runs/<name>/evaluation/<split>/). With --resume RUN_DIR, continue an interrupted run."""
    with _user_errors():
        from medseg.config import ConfigError, load_config
        from medseg.engine.trainer import is_rank_zero
        from medseg.evaluation import evaluate_run, training_device
        from medseg.recipes import final_stage_config, resume_experiment, train_experiment
        from medseg.tasks import task_class

        _quiet_lightning()

        if resume is not None:
            # typer takes the first override for the config argument when there is no config file
            extra = [str(config)] if config is not None else []
            if any("=" not in text for text in extra):
                raise ConfigError(f"--resume reads {resume / 'config.yaml'}; give no config file ({config})")
            result = resume_experiment(resume, [*extra, *(overrides or [])])
            experiment = load_config(resume / "config.yaml")
        elif config is None:
            raise ConfigError("give an experiment YAML (medseg train configs/unet-kvasir.yaml) or --resume RUN_DIR")
        else:
            experiment = load_config(config, overrides or [])
            result = train_experiment(experiment)
        if not is_rank_zero():
            return  # the other processes of a multi-device run leave reporting and evaluation to the first
        if result.finished_before:
            console.print(f"run [bold]{result.run_dir}[/] had already finished: nothing to do")
            return
        score = "" if math.isnan(result.best_val_dice) else f"  best validation Dice {result.best_val_dice:.4f}"
        console.print(f"run folder: [bold]{result.run_dir}[/]{score}")
        if not evaluate_after:
            console.print(f"next: medseg evaluate {result.run_dir}")
        elif not task_class(task := final_stage_config(experiment).train.task).evaluates:
            console.print(f"not evaluated: the run trains train.task={task}, which makes no segmentations")
        else:
            _print_evaluation(evaluate_run(result.run_dir, device=training_device(experiment)))


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="run folder written by `medseg train`")],
    split: Annotated[str | None, typer.Option(help="split to evaluate (default: eval.split of the run)")] = None,
    checkpoint: Annotated[
        str, typer.Option(help="best, last or a .ckpt path (of this run's model); each gets its own folder")
    ] = "best",
    protocol: Annotated[
        str | None, typer.Option(help="evaluation protocol (default: eval.protocol of the run)")
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(help="auto (the GPU when there is one), cpu, cuda or cuda:N (default: eval.device of the run)"),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="model inputs (images or slices) per batch (default: eval.batch_size)")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="processes reading and scoring cases, 0 for none (default: eval.metric_workers)"),
    ] = None,
) -> None:
    """Evaluate a run: per-case JSON, summary.json and a Markdown report with overlays of the worst cases, in
    runs/<name>/evaluation/<split>[-<protocol>][-<checkpoint>]/."""
    with _user_errors():
        from medseg.evaluation import evaluate_run

        output = evaluate_run(
            run_dir, split, checkpoint, protocol, device=device, batch_size=batch_size, workers=workers
        )
    _print_evaluation(output)


def _print_evaluation(output: EvaluationOutput) -> None:
    """Print the protocol's headline (its own metrics) and where the report is."""
    summary = output.summary
    console.print(f"{summary['split']} ({summary['num_cases']} cases, {summary['protocol']}): {output.headline}")
    console.print(f"report: [bold]{output.report}[/]")


@app.command()
def predict(
    model: Annotated[
        Path,
        typer.Argument(
            metavar="MODEL",
            help="run folder, .ckpt written by `medseg train`, exported bundle (its .json), or exported .onnx model "
            "(run by ONNX Runtime, without torch)",
        ),
    ],
    source: Annotated[
        Path,
        typer.Argument(metavar="INPUT", help="an image, a volume (.nii, .nii.gz, .h5) or a folder of them"),
    ],
    output: Annotated[Path, typer.Argument(help="output folder for the masks")],
    overlay: Annotated[
        bool,
        typer.Option(
            "--overlay",
            help="also write <name>_overlay.png: the predicted classes over the image, or over the slice of a volume "
            "with the most predicted foreground",
        ),
    ] = False,
    probabilities: Annotated[
        str | None,
        typer.Option(
            metavar="npz|tiff",
            help="also write the probabilities: <name>.npz (float32 (K, H, W), (K, z, y, x) for a volume) or "
            "<name>.tif (one float page per channel, per channel and slice for a volume)",
        ),
    ] = None,
    checkpoint: Annotated[str, typer.Option(help="of a run folder: best or last")] = "best",
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda or cuda:N (default: eval.device of the model)")
    ] = None,
    precision: Annotated[
        str | None, typer.Option(help="32, bf16-mixed, 16-mixed or auto (default: eval.precision)")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="images, slices or windows per batch (default: eval.batch_size)")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="processes (threads for an ONNX model) reading and preparing images, 0 for none (default: "
            "eval.metric_workers; 0 for an ONNX model)"
        ),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            metavar="resize|sliding_window",
            help="resize each image to the training size, or slide windows of the training size over it "
            "(default: eval.mode)",
        ),
    ] = None,
    overlap: Annotated[float | None, typer.Option(help="window overlap, 0 to <1 (default: eval.overlap)")] = None,
    blend: Annotated[
        str | None, typer.Option(metavar="gaussian|constant", help="window weights (default: eval.blend)")
    ] = None,
    tta: Annotated[
        bool | None,
        typer.Option(
            "--tta/--no-tta", help="test-time augmentation: mean of the flipped and turned predictions (eval.tta)"
        ),
    ] = None,
    tta_transforms: Annotated[
        str | None,
        typer.Option(
            metavar="LIST",
            help="comma-separated: hflip, vflip, rot90, rot180, rot270, transpose (implies --tta; default: "
            "eval.tta_transforms)",
        ),
    ] = None,
    largest_component: Annotated[
        bool | None,
        typer.Option(
            "--largest-component/--all-components",
            help="keep the largest connected component of each class (eval.largest_component)",
        ),
    ] = None,
    fill_holes: Annotated[
        bool | None, typer.Option("--fill-holes/--keep-holes", help="fill the holes of each class (eval.fill_holes)")
    ] = None,
    min_size: Annotated[
        int | None, typer.Option(help="remove components below this many pixels or voxels (eval.min_size)")
    ] = None,
    slice_axis: Annotated[
        int | None, typer.Option(help="NIfTI voxel axis 0, 1 or 2 to slice volumes along (eval.slice_axis)")
    ] = None,
) -> None:
    """Predict masks at each input's original size: binary masks as 0/255 PNG, multi-class as class indices;
    volumes slice by slice into NIfTI label volumes with the input's affine and header (an HDF5 volume, which stores
    no geometry, gets the identity affine: 1 mm voxels at the origin).

    A mask is named after its input (<stem>.png or <stem>.nii.gz; <stem>_<suffix> when two inputs share a stem).
    An input that cannot be read or predicted is reported and skipped; the exit status is then 1. Settings not
    given come from the model's eval section (an ONNX model's sidecar).
    """
    with _user_errors():
        from dataclasses import replace

        from medseg.errors import MedsegError
        from medseg.inference import load
        from medseg.inference.run import PredictionOutputs, input_files, predict_files
        from medseg.inference.writers import PROBABILITY_FORMATS

        onnx = model.suffix.lower() == ".onnx"  # ONNX Runtime on the CPU, without torch
        if onnx:
            from medseg.inference.onnx_predictor import refuse_torch_options

            given = {"checkpoint": checkpoint, "device": device, "precision": precision, "mode": mode}
            refuse_torch_options({**given, "overlap": overlap, "blend": blend}, flags=True)
        if probabilities is not None and probabilities not in PROBABILITY_FORMATS:
            raise MedsegError(f"unknown probabilities format {probabilities!r}; use {' or '.join(PROBABILITY_FORMATS)}")
        if min_size is not None and min_size < 0:
            raise MedsegError(f"--min-size must be 0 or more, got {min_size}")
        files = input_files(source)
        chosen = tta if tta is False or not tta_transforms else [name.strip() for name in tta_transforms.split(",")]
        predictor = load(
            model,
            device,
            precision,
            checkpoint,
            batch_size=batch_size,
            mode=mode,
            tta=chosen,
            overlap=overlap,
            blend=blend,
            slice_axis=slice_axis,
        )
        default_workers = 0
        if not onnx:
            from medseg.data import resolve_num_workers

            default_workers = resolve_num_workers(predictor.config.eval.metric_workers)
        cleaning = {"min_size": min_size, "largest_component": largest_component, "fill_holes": fill_holes}
        predictor.postprocess = replace(predictor.postprocess, **{k: v for k, v in cleaning.items() if v is not None})
        if workers is not None and workers < 0:
            raise MedsegError(f"--workers must be 0 or more, got {workers}")
        outputs = PredictionOutputs(overlay, probabilities)
        written = predict_files(
            predictor, files, output, outputs, default_workers if workers is None else workers, errors
        )
    console.print(f"wrote {written} mask(s) to [bold]{output}[/]")
    if written < len(files):
        errors.print(f"{len(files) - written} of {len(files)} image(s) could not be predicted", highlight=False)
        raise typer.Exit(1)


@app.command()
def export(
    model: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_OR_CKPT", help="run folder, .ckpt written by `medseg train`, or exported bundle (its .json)"
        ),
    ],
    out: Annotated[
        Path, typer.Argument(metavar="OUT", help="the model file to write (model.onnx, model.pt) or a folder")
    ],
    fmt: Annotated[
        str | None,
        typer.Option("--format", metavar="onnx|torchscript", help="(default: from OUT's ending; onnx for a folder)"),
    ] = None,
    dynamic_shape: Annotated[
        bool,
        typer.Option(
            "--dynamic-shape", help="also free height and width (multiples of the output stride), not only the batch"
        ),
    ] = False,
    opset: Annotated[int | None, typer.Option(help="ONNX opset version (default: 17)")] = None,
    checkpoint: Annotated[str, typer.Option(help="of a run folder: best or last")] = "best",
) -> None:
    """Export a trained model to ONNX or TorchScript, checked against the PyTorch model on random inputs.

    Writes OUT, its JSON sidecar <stem>.json (input channels, normalisation, training size, output stride,
    threshold, class names, prediction defaults, versions, SHA-256 checksums) and the weights <stem>.ckpt.
    `medseg predict OUT.onnx` runs the ONNX model without torch; `medseg.load("<stem>.json")` reads the bundle.
    """
    with _user_errors():
        from medseg.inference.export import DEFAULT_OPSET, export_run

        result = export_run(
            model,
            out,
            fmt,
            dynamic_shape=dynamic_shape,
            opset=DEFAULT_OPSET if opset is None else opset,
            checkpoint=checkpoint,
        )
    console.print(
        f"wrote [bold]{result.model}[/], {result.sidecar.name} and {result.weights.name} "
        f"(largest difference from PyTorch {result.max_abs_diff:.2g})",
        highlight=False,
    )


@app.command()
def models(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """List registered models: true and thop-style parameter counts (reference configuration), stated figure.

    thop-style counts skip parameters thop does not see (Mamba and SS2D internals, deformable convolutions), as the
    published ASC-Seg/VM-UNet tables do.
    """
    with _user_errors():
        from medseg.models.summary import model_rows

        rows = model_rows()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    with_paper = console.width >= 110  # the citation column only where it fits; --json always has it
    table = Table("name", "parameters", "thop-style", "stated", "configuration", *(["paper"] if with_paper else []))
    for row in rows:
        stated = f"{row['reference_params'] / 1e6:.4g} M" if row["reference_params"] else "-"
        kwargs = dict(row["kwargs"])
        channels = f"{kwargs.pop('in_channels', '?')} -> {kwargs.pop('num_classes', '?')}"
        setting = " ".join([channels, *(f"{key}={value}" for key, value in kwargs.items())])
        cells = [row["name"], f"{row['params'] / 1e6:.4g} M", f"{row['thop_params'] / 1e6:.4g} M", stated, setting]
        table.add_row(*cells, *([row["paper"]] if with_paper else []))
    console.print(table)


data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("check")
def data_check(
    path: Annotated[Path, typer.Argument(help="dataset folder")],
    dataset_format: Annotated[str, typer.Option("--format", help="reader name, or auto to detect it")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of text")] = False,
) -> None:
    """Validate a dataset: format, counts per split, image sizes, label values and every problem with its file.

    Exits with status 1 when a problem was found.
    """
    with _user_errors():
        from medseg.data.check import check_dataset

        report = check_dataset(path, dataset_format)
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        console.print(report.to_text(), highlight=False, markup=False)
    if not report.ok:
        raise typer.Exit(1)


@data_app.command("cache")
def data_cache(
    source: Annotated[
        Path, typer.Argument(metavar="PATH|CONFIG", help="dataset folder, or experiment YAML (its data section)")
    ],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="dotted overrides: data.image_size=256 data.in_channels=1")
    ] = None,
) -> None:
    """Build the preprocessed cache of the cases `medseg train` reads (every split) ahead of training.

    A CONFIG caches at its data settings, so its training finds every case ready; a PATH (format detected, its
    number of classes) at the data defaults plus the overrides, which must match the training's data settings.
    Prints the cache folder and its size.
    """
    with _user_errors():
        from medseg.config import apply_overrides, config_from_dict, load_config
        from medseg.data import READERS, PreparedCache, build_reader, detect_format, make_splits

        if source.is_file():
            data_cfg = load_config(source, overrides or []).data
        else:
            root = source.expanduser().resolve()
            name = detect_format(root)
            raw = {"data": {"dataset": name, "root": str(root), "num_classes": READERS[name].default_num_classes(root)}}
            data_cfg = config_from_dict(apply_overrides(raw, overrides or [])).data
        reader = build_reader(data_cfg)
        splits = make_splits(reader, data_cfg)
        cases = [piece for ids in splits.values() for case in ids for piece in reader.slice_ids(case)]
        cache = PreparedCache(reader, data_cfg)
        build = cache.ensure(cases)
        size = cache.size_bytes(build.entries)
    built = f"{build.built} built in {build.seconds:.1f} s" if build.built else "all already cached"
    counts = " + ".join(f"{len(ids)} {split}" for split, ids in splits.items())
    console.print(f"cache: [bold]{cache.folder}[/]", highlight=False)
    console.print(
        f"{reader.name}: {counts} cases = {len(cases)} 2D images or slices ({built}), {size / 2**20:.1f} MiB",
        highlight=False,
    )


@app.command()
def demo(
    output_dir: Annotated[Path, typer.Option(help="parent folder of the demo run")] = Path("runs"),
    epochs: Annotated[int | None, typer.Option(help="override the number of epochs")] = None,
) -> None:
    """Train a small U-Net on the built-in synthetic data, evaluate it and write the report."""
    with _user_errors():
        from medseg.demo import run_demo

        _quiet_lightning()
        output = run_demo(output_dir, epochs)
    console.print(f"demo test ({output.summary['num_cases']} synthetic images): {output.headline}")
    console.print(f"report: [bold]{output.report}[/]")


@app.command()
def study(
    study_file: Annotated[Path, typer.Argument(metavar="STUDY", help="study YAML, e.g. studies/cpu-glas.yaml")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list the runs, what each still needs and the cost estimate; run none")
    ] = False,
    jobs: Annotated[
        int,
        typer.Option(
            help="runs at a time, each a process with CPUs // jobs threads (and one GPU each where there are "
            "several); 0: one after another in this process"
        ),
    ] = 1,
    backend: Annotated[
        str,
        typer.Option(
            help="local (processes on this machine) or ray (each run a Ray task: pip install 'medseg[ray]'; the "
            "study folder on storage every node sees)"
        ),
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: RAY_ADDRESS, else a local Ray instance)")
    ] = None,
    gpus_per_run: Annotated[
        float | None, typer.Option(help="GPUs each Ray task requests (default: 1 where the cluster has GPUs)")
    ] = None,
) -> None:
    """Train and evaluate every (arm, dataset, seed) of a study and compare the arms with the reference arm.

    Runs go into <output_dir>/<name>/runs/; runs that are done are skipped, interrupted ones resumed (as
    `medseg train --resume`), and study.md / study.csv / study.png are rewritten after every run that ends.
    """
    with _user_errors():
        from medseg.studies import load_study, run_study

        spec = load_study(study_file)
        if dry_run:
            _print_study_plan(spec, jobs)
            return
        _quiet_lightning()

        def progress(outcome: RunOutcome) -> None:
            state = "done" if outcome.ok else "[bold red]failed[/]"
            console.print(f"{state}: {outcome.run_id}" + ("" if outcome.ok else f": {outcome.message}"))

        outcomes = run_study(
            spec, study_file, jobs, progress, backend=backend, ray_address=ray_address, gpus_per_run=gpus_per_run
        )
    console.print(f"report: [bold]{spec.study_dir / 'study.md'}[/]")
    if any(not outcome.ok for outcome in outcomes):
        raise typer.Exit(1)


def _print_study_plan(spec: StudyConfig, jobs: int) -> None:
    """The ``--dry-run`` listing: each run, its state and estimated training time, and the total."""
    from medseg.studies.plan import estimate_seconds, expand_study, run_state, step_seconds_table, train_cases

    runs = expand_study(spec)
    table_seconds = step_seconds_table()
    cases = train_cases(runs)
    table = Table("model", "epochs", "size", "train cases", "state", "estimate")
    table.add_column("run", no_wrap=True)
    total, unknown = 0.0, 0
    for run in runs:
        config = run.config
        seconds = estimate_seconds(config, table_seconds, cases[run.dataset])
        state = run_state(run)
        if state != "done":
            total += seconds or 0.0
            unknown += seconds is None
        epochs = "+".join(
            str(stage.overrides.get("train.epochs", config.train.epochs)) for stage in config.stages
        ) or str(config.train.epochs)
        cells = [config.model.name, epochs, str(config.data.image_size), str(cases[run.dataset] or "?"), state]
        table.add_row(*cells, "?" if seconds is None else f"{seconds / 60:.1f} min", run.run_id)
    console.print(table)
    console.print(
        f"{len(runs)} runs, {sum(run_state(run) != 'done' for run in runs)} to do: about {total / 3600:.1f} h of "
        f"training{f' ({unknown} runs without an estimate)' if unknown else ''}, sequentially, on the 2-CPU machine "
        "of benchmarks/results/models.md (its fp32 step time of the model's reference configuration at batch 8, "
        "256 px, scaled by batch x pixels, x steps; "
        "validation, evaluation and extra loss terms not counted; early stopping can only shorten it). "
        f"--jobs {jobs} divides it by at most {max(jobs, 1)} where there are CPUs or GPUs for each job.",
        highlight=False,
    )
    console.print(f"study folder: [bold]{spec.study_dir}[/]")


def main() -> None:
    """Entry point used by ``python -m medseg``."""
    app()
