"""``yolox``: the command line (typer + rich). The contract other tools and checks rely on:

    yolox prepare  --data SRC --out DIR                 (or --params FILE)
    yolox train    --params FILE [--resume]
    yolox eval     --model NAME --weights FILE.pth|FILE.onnx --data DATASET --split SPLIT --img-size N --out metrics.json
    yolox export   --model NAME --weights FILE.pth --img-size N --out FILE.onnx [--variant raw|decoded|end2end]
    yolox benchmark --weights FILE.pth|FILE.onnx|models:/NAME/VERSION|models:/NAME@ALIAS --data DATASET
                    [--reference FILE.onnx|FILE.pth|models:/...] [--run-id RUN]
    yolox predict  --weights FILE --source IMAGE|VIDEO|DIR|URL [--source ...] --out DIR
    yolox gate     --params FILE [--candidate-version N] [--dry-run]   (exit 1 when rejected)
    yolox promote  --params FILE --version N | --rollback
    yolox pipeline --params FILE [--json] [--json-out FILE]   (the stages of the Prefect flow ``train-yolox``)
    yolox tracking flush --out DIR                      (send a training's journaled metrics to MLflow)
    yolox augment-preview --params FILE --out FILE.png

Each stage command also takes ``--params FILE`` and then defaults its paths from it (how ``dvc.yaml``
calls them). Logs, progress bars and reports go to stderr (:mod:`yolox.console`); stdout holds a command's
result only (the JSON of ``yolox pipeline --json`` and ``yolox benchmark``, the tables of ``gate`` and
``promote``). A user error prints one message and exits 1, without a traceback. A command that reaches the
MLflow tracking server or registry (gate, promote, pipeline, benchmark of a ``models:/`` URI or with
``--run-id``) checks it first, in seconds (``tracking.preflight_timeout_s``), and every MLflow request after
that is bounded (``tracking.http_timeout_s`` per attempt, 2 retries: about 30 s per call at most by default).
Ctrl-C (SIGINT) or SIGTERM exits 130 or 143; interrupted training first saves a resumable checkpoint and the
command prints how to resume.
"""

from __future__ import annotations

import json
import logging
import shlex
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from yolox.console import (
    console,
    decision_table,
    pipeline_report,
    print_report,
    quiet_libraries,
    registry_options,
)
from yolox.errors import ConfigError, YoloxError
from yolox.files import write_json, write_text

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="YOLOX: prepare, train, evaluate, export, predict, gate and promote, and run the whole pipeline.")

ParamsOpt = Annotated[Path | None, typer.Option("--params", "-p", help="Params YAML (params/*.yaml).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a param: section.key=value (repeatable).")]


def _check_img_size(value: int | None) -> int | None:
    """--img-size: the one size rule (yolox.models.meta.check_input_size), checked before any file is read."""
    from yolox.models.meta import check_input_size

    return value if value is None else check_input_size(value, name="--img-size")


ImgSizeOpt = Annotated[int | None, typer.Option("--img-size", callback=_check_img_size, help=(
    "Input side (pixels), a multiple of 32; default: the size the model was trained at."))]


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=False)], force=True)
    for noisy in ("alembic", "mlflow", "httpx", "urllib3", "prefect", "botocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _params(path: Path | None, overrides: list[str] | None = None) -> Any:
    from yolox.config import params_from

    return params_from(path, overrides)


def _preflight(p: Any) -> None:
    """What a command runs before it reaches the tracking server or registry (yolox.tracking.store.preflight):
    the registry names in the params checked, every MLflow request of the process bounded
    (``tracking.http_timeout_s``, 2 retries), the stores answering within ``tracking.preflight_timeout_s``;
    else one line and exit 1, in seconds."""
    from yolox.tracking.store import preflight

    preflight(p)


def _registry_preflight(p: Any, args: dict[str, Any]) -> bool:
    """For a command whose weights or model may name a registered version: each ``models:/`` value of ``args``
    (option -> value, e.g. ``{"--weights": weights}``) checked for the forms the registry accepts (the error
    names the option), then :func:`_preflight`. Returns whether there was one (a file: nothing done)."""
    from yolox.tracking.store import parse_models_uri

    uris = [parse_models_uri(str(v), k) for k, v in args.items() if str(v or "").startswith("models:/")]
    if uris:
        _preflight(p)
    return bool(uris)


@contextmanager
def _server_calls() -> Iterator[None]:
    """Within: an MLflow call that failed because the server stopped answering after the preflight (each call
    bounded: ``yolox.tracking.store.bound_requests``) is one line saying what to do, not a traceback."""
    from yolox.errors import PreflightError

    try:
        yield
    except PreflightError:
        raise
    except Exception as err:
        from yolox.tracking.store import server_lost

        lost = server_lost(err)
        if lost is None:
            raise
        raise lost from err


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    quiet_libraries(verbose)   # MLflow's run URLs off stdout; its download bars, schema lines off stderr
    _setup_logging(verbose)
    if not verbose:   # urllib3's "Retrying (...)" warnings: MLflow's bounded retries end in one error line instead
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


@app.command()
def fetch(
    data: Annotated[str | None, typer.Option(help="Dataset name (e.g. coco128) or folder.")] = None,
    out: Annotated[Path, typer.Option(help="Where the raw dataset is copied (DVC tracks it).")] = Path("data/raw"),
    params: ParamsOpt = None,
) -> None:
    """Copy a raw dataset (by name, from YOLOX_ASSETS_DIR or the download cache) into the project."""
    from yolox.assets import fetch_dataset

    p = _params(params)
    path = fetch_dataset(data or p.data.source, out)
    console.print(f"raw dataset {data or p.data.source} -> {path}")


@app.command()
def prepare(
    data: Annotated[str | None, typer.Option(help="Dataset name (coco128), YOLO dataset.yaml/folder, or COCO json.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder of the prepared dataset.")] = None,
    images: Annotated[str | None, typer.Option(help="Image folder of a COCO json source.")] = None,
    params: ParamsOpt = None,
    set_: SetOpt = None,
) -> None:
    """Validate a dataset and write it as a clean, versioned COCO-format dataset with a report."""
    from yolox.data.stage import prepare as prepare_stage

    p = _params(params, set_)
    p = p.model_copy(update={"data": p.data.model_copy(
        update={k: v for k, v in {"source": data, "images": images}.items() if v})})
    result = prepare_stage(p, out)
    table = Table(title=f"prepared {p.data.source} -> {result.path}")
    for col in ("split", "images", "boxes"):
        table.add_column(col)
    table.add_row("train", str(result.train_images), str(result.train_boxes))
    table.add_row("val", str(result.val_images), str(result.val_boxes))
    table.add_row("skipped", str(result.skipped_images), str(result.skipped_boxes))
    console.print(table)
    console.print(f"report: {result.report}; data version {result.data_version}")


@app.command()
def train(
    params: ParamsOpt = None,
    set_: SetOpt = None,
    prepared: Annotated[Path | None, typer.Option(help="Prepared dataset (default: data.prepared_dir).")] = None,
    out: Annotated[Path | None, typer.Option(help="Checkpoint folder (default: train.output_dir).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from <out>/last.pth.")] = False,
) -> None:
    """Train YOLOX (fine-tune from model.weights) on a prepared dataset; writes <out>/last.pth each epoch.

    With train.distributed.launcher 'torchrun' this starts this machine's torchrun agent (run the same
    command on every node), with 'kubernetes' it submits a PyTorchJob and watches it."""
    from yolox.registry.warm_start import start_weights
    from yolox.train.stage import train as train_stage

    p = _params(params, set_)
    result = train_stage(start_weights(p, out), prepared, out, resume=resume)
    if result.history:
        console.print(f"trained {result.epochs} epochs in {result.seconds:.0f} s: {result.checkpoint}")


@app.command("eval")
def eval_(
    weights: Annotated[str | None, typer.Option(help="A .pth checkpoint, an .onnx model or an OpenVINO IR (.xml).")] = None,
    model: Annotated[str | None, typer.Option(help="Model name for a .pth (e.g. yolox-nano).")] = None,
    data: Annotated[str | None, typer.Option(help="YOLO dataset.yaml, COCO json (with --images), or prepared folder.")] = None,
    split: Annotated[str, typer.Option(help="Split to evaluate (train, val).")] = "val",
    images: Annotated[str | None, typer.Option(help="Image folder of a COCO json.")] = None,
    img_size: ImgSizeOpt = None,
    out: Annotated[Path | None, typer.Option(help="metrics.json to write.")] = None,
    plots: Annotated[Path | None, typer.Option(help="Also write the PR curves, per-class AP, confusion matrix "
                                               "and example detections as PNG files into this folder.")] = None,
    params: ParamsOpt = None,
    set_: SetOpt = None,
) -> None:
    """COCO AP (pycocotools) of a .pth or .onnx model on a dataset; writes metrics.json."""
    from yolox.config import registry_reference
    from yolox.evaluate.stage import evaluate

    if weights and (weights.startswith("models:/") or (registry_reference(weights) and not Path(weights).exists())):
        raise ConfigError(f"--weights {weights}: yolox eval takes a .pth or .onnx file, not a registered version; "
                          "for the AP of one, run yolox benchmark --weights models:/NAME/VERSION (or @ALIAS)")
    p = _params(params, set_)
    if out is not None and out.is_dir():
        raise ConfigError(f"--out {out} is a folder: give the metrics .json file to write")
    if plots is not None and plots.exists() and not plots.is_dir():
        raise ConfigError(f"--plots {plots} is a file: give a folder for the PNG files")
    result = evaluate(p, weights, data, split, images, img_size, model, out, plots_dir=plots)
    table = Table(title=f"{Path(result.weights).name} on {data or p.data.prepared_dir} ({split}, {result.img_size}px)")
    for k in result.metrics:
        table.add_column(k)
    table.add_row(*(f"{v:.4f}" for v in result.metrics.values()))
    console.print(table)
    console.print(f"metrics: {result.metrics_path} (per class: {result.per_class_path})")


@app.command()
def export(
    weights: Annotated[str | None, typer.Option(help="A .pth checkpoint.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name (e.g. yolox-nano).")] = None,
    img_size: ImgSizeOpt = None,
    out: Annotated[Path | None, typer.Option(help="The .onnx to write (an OpenVINO IR goes beside it).")] = None,
    format_: Annotated[list[str] | None, typer.Option(
        "--format", help="onnx and/or openvino (an IR <onnx stem>.xml + .bin, checked against PyTorch with "
        "OpenVINO); repeat or comma-separate for both; default: export.formats. The .onnx is always written.")] = None,
    check_images: Annotated[Path | None, typer.Option(
        help="Folder of real images for the ONNX check (default: the prepared dataset's, when there is one).")] = None,
    skip_check: Annotated[bool, typer.Option("--skip-check", help="Do not compare ONNX with PyTorch.")] = False,
    variant: Annotated[str | None, typer.Option(
        help="raw (undecoded, the authors' layout), decoded (boxes + scores) or end2end (NMS in the graph); "
        "default: export.variant.")] = None,
    conf: Annotated[float | None, typer.Option(help="end2end: score threshold baked in (default: the "
                                               "export.thresholds section's, serve.conf_thresh).")] = None,
    nms: Annotated[float | None, typer.Option(help="end2end: NMS IoU threshold baked in.")] = None,
    max_det: Annotated[int | None, typer.Option("--max-det", help="end2end: detections per image (K).")] = None,
    int8: Annotated[bool | None, typer.Option(
        "--int8/--no-int8", help="Also write an INT8 model (<onnx stem>.int8.onnx) calibrated on the "
        "prepared train images, its AP measured against FP32 on the val split (export.int8; default: the "
        "params').")] = None,
    params: ParamsOpt = None,
    set_: SetOpt = None,
) -> None:
    """Export to ONNX and check it against PyTorch with ONNX Runtime (an OpenVINO IR with --format openvino, INT8
    with --int8, TensorRT as export.* params say). --conf in [0, 1], --nms in (0, 1] and --max-det >= 1 are checked
    before any work."""
    from yolox.config import with_options
    from yolox.errors import ExportError
    from yolox.export.stage import export as export_stage
    from yolox.models.meta import VARIANTS

    if variant is not None and variant not in VARIANTS:
        raise ConfigError(f"--variant {variant!r}: must be one of {', '.join(VARIANTS)}")
    p = _params(params, set_)
    if int8 is not None:     # --int8 / --no-int8: export.int8 for this command
        p = p.model_copy(update={"export": p.export.model_copy(update={"int8": int8})})
    if format_:              # --format: export.formats for this command, validated as the param is
        fmts = list(dict.fromkeys(f.strip() for value in format_ for f in value.split(",") if f.strip()))
        p = p.model_copy(update={"export": with_options(p.export, {"formats": ("--format", fmts)})})
    # the baked thresholds, checked by the rules of the section they override (export.thresholds), before any work
    baked = with_options(p.serve if p.export.thresholds == "serve" else p.eval,
                         {"conf_thresh": ("--conf", conf), "nms_thresh": ("--nms", nms), "max_det": ("--max-det", max_det)})
    conf, nms, max_det = (None if v is None else getattr(baked, k) for k, v in
                          (("conf_thresh", conf), ("nms_thresh", nms), ("max_det", max_det)))
    if weights is not None and Path(weights).suffix.lower() == ".onnx":
        raise ConfigError(f"--weights {weights}: export takes a .pth checkpoint; this is an ONNX model already")
    if out is not None and out.is_dir():
        raise ConfigError(f"--out {out} is a folder: give the .onnx file to write")
    result = export_stage(p, weights, out, img_size, model, check_images, check=not skip_check, variant=variant,
                          conf_thresh=conf, nms_thresh=nms, max_det=max_det)
    e = result.meta.export
    baked = f", conf {e.conf_thresh:g} NMS {e.nms_thresh:g} max {e.max_det}" if e and e.variant == "end2end" else ""
    if result.int8 is not None:
        console.print(f"{result.int8.onnx}: INT8 AP50:95 {result.int8.int8_ap:.4f} (FP32 {result.int8.fp32_ap:.4f}, "
                      f"drop {result.int8.drop:.4f}) on {result.int8.num_images} val images", highlight=False)
    if result.tensorrt:
        console.print(f"TensorRT: {result.tensorrt}", highlight=False)
    if (ov := result.openvino) is not None:
        diff = "" if ov.max_abs_diff is None else f", max |openvino - torch| = {ov.max_abs_diff:.2e}"
        console.print(f"{ov.xml}: OpenVINO IR, check {ov.check}{diff}", highlight=False)
        if ov.int8_xml is not None:
            console.print(f"{ov.int8_xml}: OpenVINO INT8 AP50:95 {ov.int8_ap:.4f} (FP32 IR {ov.fp32_ap:.4f}, drop "
                          f"{ov.drop:.4f}) on {ov.num_images} val images", highlight=False)
        if ov.check == "failed":
            raise ExportError(f"{ov.xml} differs from PyTorch by {ov.max_abs_diff:.3g} (limits: raw "
                              f"{p.export.max_abs_diff}, scores {p.export.max_score_diff}, boxes "
                              f"{p.export.max_box_diff} px)")
    if result.check == "skipped":
        console.print(f"{result.onnx} ({result.variant}{baked}, {result.meta.input_size}px): ONNX check skipped",
                      highlight=False)
        return
    unit = ("on the raw outputs (grid offsets, log sizes, probabilities)" if result.variant == "raw" else
            "over the matched detections (box corners in input pixels or scores, whichever differs more; "
            "each in the ONNX check line above)")
    console.print(f"{result.onnx} ({result.variant}{baked}): max |onnx - torch| = {result.max_abs_diff:.2e} "
                  f"{unit}, {result.num_check_images} images", highlight=False)
    if not result.passed:
        raise ExportError(f"{result.onnx} differs from PyTorch by {result.max_abs_diff:.3g} (limits: raw "
                          f"{p.export.max_abs_diff}, scores {p.export.max_score_diff}, boxes {p.export.max_box_diff} px)")


def _registered_onnx(uri: str, arg: str) -> str:
    """:func:`yolox.registry.versions.registered_onnx`, imported only when a ``models:/`` argument needs it: the
    registry imports MLflow, which a benchmark of local files never needs (seconds of start-up)."""
    from yolox.registry.versions import registered_onnx

    return registered_onnx(uri, arg)


@app.command()
def benchmark(
    weights: Annotated[str, typer.Option(help="A .pth checkpoint (every format), an .onnx, an OpenVINO "
                                         "IR .xml, or a registered version: models:/NAME/VERSION or "
                                         "models:/NAME@ALIAS.")],
    data: Annotated[str | None, typer.Option(help="Dataset for the AP (as yolox eval; default data.prepared_dir).")] = None,
    split: Annotated[str, typer.Option(help="Split to measure on.")] = "val",
    model: Annotated[str | None, typer.Option(help="Model name for an authors' .pth (e.g. yolox-nano).")] = None,
    img_size: ImgSizeOpt = None,
    reference: Annotated[str | None, typer.Option(
        help="A model to compare with in the same run: an .onnx (e.g. the authors' yolox_nano.onnx; a "
        "released name resolves as --weights does), a .pth, or a registered version (models:/NAME/VERSION, "
        "models:/NAME@ALIAS). Checked before any measuring.")] = None,
    formats: Annotated[str | None, typer.Option(
        help="Comma-separated subset of pytorch,onnx-raw,onnx-end2end,onnx-int8,openvino,openvino-int8,tensorrt "
        "(.pth only).")] = None,
    out: Annotated[Path | None, typer.Option(help="Keep the exported files here (default: a temporary folder).")] = None,
    max_images: Annotated[int | None, typer.Option("--max-images", min=1, help="Only the first N images (N >= 1).")] \
        = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the result here.")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Log the figures to this MLflow run.")] = None,
    params: ParamsOpt = None,
    set_: SetOpt = None,
) -> None:
    """AP, latency (batch 1), throughput (batch export.benchmark_batch) and size of every format of a model;
    a table on stderr, one JSON line on stdout."""
    from yolox.export.benchmark import run_benchmark, to_json_line

    p = _params(params, set_)
    fmts = [f.strip() for f in formats.split(",") if f.strip()] if formats else None
    with _server_calls():   # a models:/ URI or --run-id: the preflight first (run_benchmark)
        result = run_benchmark(p, weights, data, split, model, img_size, reference, fmts, out, max_images,
                               run_id, _registered_onnx)
    Console(stderr=True, width=max(console.width, 150)).print(result.table())
    console.print(f"machine: {result.machine} (latency depends on the machine and its load: compare rows of one run)",
                  highlight=False)
    line = to_json_line(result)
    if json_out:
        write_text(json_out, line + "\n")     # atomic: a killed command leaves the previous file
    print(line)


@app.command()
def predict(
    weights: Annotated[str, typer.Option(help="A .pth checkpoint, an .onnx model or an OpenVINO IR (.xml).")],
    source: Annotated[list[str], typer.Option(
        help="An image, a video (.mp4, .avi, ...), a folder of them, or an http(s) URL; repeat for several.")],
    out: Annotated[Path, typer.Option(help="Output folder (drawn images, annotated videos, predictions.json).")],
    model: Annotated[str | None, typer.Option(help="Model name for an authors' .pth.")] = None,
    img_size: ImgSizeOpt = None,
    conf: Annotated[float | None, typer.Option(help="Score threshold (default: serve.conf_thresh).")] = None,
    nms: Annotated[float | None, typer.Option(help="NMS IoU threshold (default: serve.nms_thresh).")] = None,
    params: ParamsOpt = None,
    set_: SetOpt = None,
) -> None:
    """Detect objects in images, videos and URLs: drawn boxes and a JSON of detections (boxes clipped to the
    image). Nothing is written over an input (an --out that would is refused before any work)."""
    from yolox.config import with_options
    from yolox.inference import load_model, model_input_size
    from yolox.serve.predict import check_outputs
    from yolox.serve.predict import predict as run_predict

    p = _params(params, set_)
    serve = with_options(p.serve, {"conf_thresh": ("--conf", conf), "nms_thresh": ("--nms", nms)})
    check_outputs(source, out)   # before the model is loaded: an output path is never an input path
    backend, meta = load_model(weights, model)
    size = model_input_size(meta, img_size)
    result = run_predict(backend, source, out, list(meta.names), size, serve.conf_thresh, serve.nms_thresh,
                         serve.max_det, p.predict)
    skipped = f", {len(result.skipped)} skipped (listed in it)" if result.skipped else ""
    videos = f" and {result.frames} frames of {result.videos} videos" if result.videos else ""
    console.print(f"{result.detections} detections on {result.images} images{videos} -> {result.out_dir} "
                  f"({result.json_path.name}{skipped})", highlight=False)


@app.command()
def gate(
    params: ParamsOpt = Path("params/default.yaml"),
    set_: SetOpt = None,
    candidate_version: Annotated[str | None, typer.Option(
        "--candidate-version", help="Registered version to gate (default: the challenger alias).")] = None,
    prepared: Annotated[Path | None, typer.Option(help="Prepared dataset (default: data.prepared_dir).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide and print; move and record nothing.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the decision record here.")] = None,
) -> None:
    """Gate a candidate against the champion (both evaluated on the prepared val set); promote it if it passes, exit 1 if not."""
    from yolox.errors import GateError
    from yolox.registry.stage import gate as gate_stage
    from yolox.tracking.store import check_version

    p = _params(params, set_)
    if candidate_version is not None:
        candidate_version = check_version(candidate_version, "--candidate-version")
    _preflight(p)
    with _server_calls():
        decision = gate_stage(p, candidate_version, prepared, dry_run=dry_run)
    Console().print(decision_table(decision))     # the command's result: stdout (pipeline's: stderr)
    if json_out:
        write_json(json_out, decision.to_json())   # atomic
    console.print(decision.outcome, highlight=False)
    if not decision.promote:
        raise GateError(decision.reason())
    if decision.extra.get("stale"):
        raise GateError(decision.outcome)


@app.command()
def promote(
    params: ParamsOpt = Path("params/default.yaml"),
    set_: SetOpt = None,
    version: Annotated[str | None, typer.Option(help="Make this registered version the champion (manual override).")] = None,
    rollback: Annotated[bool, typer.Option("--rollback", help="Back to the champion before the current one.")] = False,
    reason: Annotated[str, typer.Option(help="Why (recorded in the promotion history).")] = "",
) -> None:
    """Move the champion alias by hand: --version N (recorded as promotion=manual) or --rollback."""
    from yolox.registry.versions import champion_history
    from yolox.registry.versions import promote as do_promote
    from yolox.registry.versions import rollback as do_rollback
    from yolox.tracking.store import check_version

    p = _params(params, set_)
    name, alias = p.tracking.registered_model, p.gate.champion_alias
    if (version is None) == (not rollback):
        raise ConfigError("yolox promote: pass exactly one of --version N or --rollback")
    if version is not None:
        version = check_version(version, "--version")
    _preflight(p)
    with _server_calls():
        event = (do_rollback(name, alias, reason) if rollback
                 else do_promote(name, version, "manual", alias, note=reason))
        history = champion_history(name)[-10:]
    console.print(f"{name}: {alias} is version {event.version} ({event.how}; before: {event.previous or 'none'})",
                  highlight=False)
    table = Table(title=f"{name}: {alias} history (latest last)")
    for col in ("#", "version", "previous", "how", "at", "by"):
        table.add_column(col)
    for e in history:
        table.add_row(str(e.seq), e.version, e.previous or "-", e.how, e.at, e.by)
    Console().print(table)


@app.command()
def pipeline(params: ParamsOpt = Path("params/default.yaml"), set_: SetOpt = None,
             force: Annotated[bool, typer.Option("--force", help="Train even when the data, params and code are "
                                                 "those the champion was trained on.")] = False,
             json_: Annotated[bool, typer.Option("--json", help="Print the full JSON summary on stdout "
                                                 "(nothing else goes there: ... --json | jq).")] = False,
             json_out: Annotated[Path | None, typer.Option("--json-out", help="Also write the full JSON "
                                                           "summary to this file (atomic).")] = None) -> None:
    """Run the whole pipeline in this process: prepare -> train -> evaluate -> export -> register -> gate
    (the same stages the Prefect flow train-yolox runs as tasks: python -m flows.train_yolox). Nothing new since
    the champion (same data, params and code): skipped, unless --force.

    Ends with a short report on stderr: each gate rule (candidate vs champion or base weights), the
    decision, where the model is and the next command. stdout stays empty, or holds only the JSON summary
    with --json."""
    from yolox.pipeline import run_pipeline
    from yolox.registry.rules import Decision

    if json_out is not None and json_out.is_dir():
        raise ConfigError(f"--json-out {json_out} is a folder: give the .json file to write")
    result = run_pipeline(_params(params, set_), force=force)
    summary = result.summary()
    if json_out is not None:
        write_json(json_out, summary)      # atomic: a killed command leaves the previous file
    decision = None if result.skipped else Decision.from_json(result.decision)
    print_report(pipeline_report(result, decision, registry_options(params, set_)))
    if json_:
        print(json.dumps(summary, indent=2))   # stdout: the machine-readable result, and nothing else


tracking_app = typer.Typer(no_args_is_help=True, help="MLflow tracking: what training journaled while the server "
                                                     "was away.")
app.add_typer(tracking_app, name="tracking")


@tracking_app.command("flush")
def tracking_flush(
    out: Annotated[Path | None, typer.Option(help="Training output folder holding tracking-journal.jsonl "
                                             "(default: train.output_dir).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait for the server (default: "
                                                  "tracking.flush_timeout_s).")] = None,
    params: ParamsOpt = None,
    set_: SetOpt = None,
) -> None:
    """Send the metrics a training journaled but MLflow did not take (server down or slow) to MLFLOW_TRACKING_URI,
    in order, each once, and the run's end when a pipeline journaled it (its server stopped answering: the run
    is then marked FAILED with its reason); exit 1 if some are still pending."""
    from yolox.errors import TrackingError
    from yolox.tracking.journal import flush_journal

    p = _params(params, set_)
    folder = out or Path(p.train.output_dir)
    wait = p.tracking.flush_timeout_s if timeout is None else timeout
    r = flush_journal(folder, wait, p.tracking.request_timeout_s)
    if not r.found:
        console.print(f"no tracking journal in {folder}: nothing to send", highlight=False)
        return
    if r.other_stores:
        console.print(f"left alone: pending entries for {', '.join(r.other_stores)} (set MLFLOW_TRACKING_URI to "
                      "flush them)", highlight=False)
    if r.pending:
        raise TrackingError(f"{r.pending} entries of {r.journal} still pending: MLflow at {r.store} did not take "
                            f"them within {wait:g} s; run this again when it answers")
    ended = "".join(f"; run {run} ended {status}" for run, status in r.ended)
    console.print(f"{r.journal}: sent {r.sent_entries} entries ({r.sent_metrics} metrics, {r.skipped_metrics} "
                  f"already in MLflow) to {r.store}{ended}; nothing pending"
                  + (f"; {r.refused} refused (see the log)" if r.refused else ""), highlight=False, soft_wrap=True)


@app.command("augment-preview")
def augment_preview(
    params: ParamsOpt = Path("params/default.yaml"),
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("reports/augment_preview.png"),
    n: Annotated[int, typer.Option(min=1, max=256, help="Number of samples (1..256).")] = 16,
    prepared: Annotated[Path | None, typer.Option(help="Prepared dataset.")] = None,
) -> None:
    """Save a grid of augmented training samples with their boxes (what the model is fed)."""
    from yolox.data.dataset import augment_preview as preview
    from yolox.data.records import load_prepared

    p = _params(params)
    ds = load_prepared(prepared or p.data.prepared_dir, "train")
    path = preview(ds, p.augment, p.model.name, p.model.input_size, n=n, seed=p.train.seed, out_path=out)
    console.print(f"augmentation preview: {path}")


def resume_command(argv: list[str], checkpoint: Path | None = None) -> str | None:
    """The command that continues an interrupted ``yolox train`` or ``yolox pipeline`` (its training stage):
    the same arguments with ``--resume`` (for the pipeline: ``train`` with its params, on the run's own data
    snapshot and training folder: ``checkpoint``'s folder and its ``data`` sibling); None for others."""
    args = list(argv[1:])
    at = next((i for i, a in enumerate(args) if a in ("train", "pipeline")), None)
    if at is None:
        return None
    if args[at] == "pipeline":
        args[at] = "train"
        if not any(a in ("--params", "-p") or a.startswith("--params=") for a in args):
            args += ["--params", "params/default.yaml"]    # the pipeline command's default
        if checkpoint is not None:        # the run's own folder (yolox.pipeline.in_run_dir)
            run_dir = Path(checkpoint).parent.parent
            args += ["--prepared", str(run_dir / "data"), "--out", str(Path(checkpoint).parent)]
    args = [a for a in args if a not in ("--resume", "--no-resume")] + ["--resume"]
    return shlex.join(["yolox", *args])


def _sigterm_raises(signum: int, frame: Any) -> None:
    from yolox.errors import Interrupted

    raise Interrupted(signum)


def run() -> None:
    """Entry point with user errors turned into one line and exit code 1.

    SIGTERM is raised as :class:`~yolox.errors.Interrupted` (as Ctrl-C raises KeyboardInterrupt), so that
    cleanup runs (a pipeline's MLflow run is marked KILLED, a launched job is stopped); training holds both
    signals itself to save a checkpoint first. Interrupted, the command prints what it saved and how to
    resume, and exits 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
    from yolox.errors import Interrupted

    previous = signal.signal(signal.SIGTERM, _sigterm_raises)
    try:
        code = app(standalone_mode=False)
    except Interrupted as err:
        console.print(str(err), style="bold yellow", markup=False, highlight=False, soft_wrap=True)
        command = resume_command(sys.argv, err.checkpoint) if err.checkpoint else None
        if command:
            console.print(f"resume with: {command}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except YoloxError as err:   # the message as text, not markup (it may quote "[...]", e.g. torch's errors)
        console.print(Text.assemble(("error:", "bold red"), f" {err}"), highlight=False, soft_wrap=True)
        sys.exit(1)
    except Exception as err:
        import click

        # usage errors (unknown option, a value of the wrong type): typer >= 0.2x raises its own copy of click's
        # exceptions (typer.TyperException), older ones click's
        usage = (getattr(typer, "TyperException", click.exceptions.ClickException), click.exceptions.ClickException)
        if isinstance(err, usage) and hasattr(err, "show"):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, (typer.Abort, click.exceptions.Abort)):
            sys.exit(1)
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    if isinstance(code, int) and code:   # typer returns 130 for a KeyboardInterrupt
        if code == 130:
            console.print("interrupted by SIGINT", style="bold yellow", highlight=False)
        sys.exit(code)


if __name__ == "__main__":
    run()
