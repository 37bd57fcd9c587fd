"""``yolox``: the command line (typer + rich). The contract other tools and checks rely on:

    yolox prepare  --data SRC --out DIR                 (or --params FILE)
    yolox train    --params FILE [--resume]
    yolox eval     --model NAME --weights FILE.pth|FILE.onnx --data DATASET --split SPLIT --img-size N --out metrics.json
    yolox export   --model NAME --weights FILE.pth --img-size N --out FILE.onnx
    yolox predict  --weights FILE --source IMAGE_OR_DIR --out DIR
    yolox gate     --params FILE [--candidate-version N] [--dry-run]   (exit 1 when rejected)
    yolox promote  --params FILE --version N | --rollback
    yolox pipeline --params FILE                        (the Prefect flow ``train-yolox``)
    yolox augment-preview --params FILE --out FILE.png

Each stage command also takes ``--params FILE`` and then defaults its paths from it (how ``dvc.yaml``
calls them). A user error prints one message and exits 1, without a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from yolox.errors import ConfigError, YoloxError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="YOLOX: prepare, train, evaluate, export, predict, gate and promote, and run the whole pipeline.")
console = Console(stderr=True)

ParamsOpt = Annotated[Path | None, typer.Option("--params", "-p", help="Params YAML (params/*.yaml).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a param: section.key=value (repeatable).")]


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=False)], force=True)
    for noisy in ("alembic", "mlflow", "httpx", "urllib3", "prefect", "botocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _params(path: Path | None, overrides: list[str] | None = None) -> Any:
    from yolox.config import PipelineParams, load_params

    if path is None:
        if overrides:
            raise ConfigError("--set needs --params")
        return PipelineParams()
    return load_params(path, overrides)


def _torch_model(weights: str, model_name: str | None) -> tuple[Any, list[str], int, str]:
    """(model in eval mode, class names, input size, model name) from a project or authors' checkpoint."""
    import torch

    from yolox.assets import resolve_weights
    from yolox.data.coco_classes import COCO_CLASSES
    from yolox.models import build_model, get_variant, load_weights
    from yolox.models.checkpoint import read_state_dict

    path = resolve_weights(weights)
    meta: dict[str, Any] = {}
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(raw, dict):
            meta = {k: raw[k] for k in ("model_name", "names", "input_size") if k in raw}
    except Exception as err:  # noqa: BLE001 - read_state_dict below reports unreadable files
        logging.getLogger("yolox").debug("%s: no project metadata (%s)", path, err)
    name = model_name or meta.get("model_name")
    if name is None:
        raise ConfigError(f"{path}: say which model it is with --model (e.g. yolox-nano)")
    state = read_state_dict(path)
    nc = int(state["head.cls_preds.0.weight"].shape[0]) if "head.cls_preds.0.weight" in state else 80
    names = list(meta.get("names") or (COCO_CLASSES if nc == 80 else [f"class_{i}" for i in range(nc)]))
    model = build_model(name, nc)
    load_weights(model, path)
    return model.eval(), names, int(meta.get("input_size") or get_variant(name).input_size), name


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    _setup_logging(verbose)


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
    from yolox.data.prepare import prepare_dataset

    p = _params(params, set_)
    data_params = p.data.model_copy(update={k: v for k, v in {"source": data, "images": images}.items() if v})
    result = prepare_dataset(data_params, out)
    table = Table(title=f"prepared {data_params.source} -> {result.out_dir}")
    for col in ("split", "images", "boxes"):
        table.add_column(col)
    table.add_row("train", str(result.num_train_images), str(result.num_train_boxes))
    table.add_row("val", str(result.num_val_images), str(result.num_val_boxes))
    table.add_row("skipped", str(result.num_skipped_images), str(result.num_skipped_boxes))
    console.print(table)
    console.print(f"report: {result.report_path}")


@app.command()
def train(
    params: ParamsOpt = None,
    set_: SetOpt = None,
    prepared: Annotated[Path | None, typer.Option(help="Prepared dataset (default: data.prepared_dir).")] = None,
    out: Annotated[Path | None, typer.Option(help="Checkpoint folder (default: train.output_dir).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from <out>/last.pth.")] = False,
) -> None:
    """Train YOLOX (fine-tune from model.weights) on a prepared dataset; writes <out>/last.pth each epoch."""
    from yolox.train.trainer import train as run_train

    p = _params(params, set_)
    result = run_train(p, prepared or p.data.prepared_dir, out, resume=resume)
    if result.history:
        console.print(f"trained {result.epochs} epochs in {result.seconds:.0f} s: {result.checkpoint}")


@app.command("eval")
def eval_(
    weights: Annotated[str | None, typer.Option(help="A .pth checkpoint or an .onnx model.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name for a .pth (e.g. yolox-nano).")] = None,
    data: Annotated[str | None, typer.Option(help="YOLO dataset.yaml, COCO json (with --images), or prepared folder.")] = None,
    split: Annotated[str, typer.Option(help="Split to evaluate (train, val).")] = "val",
    images: Annotated[str | None, typer.Option(help="Image folder of a COCO json.")] = None,
    img_size: Annotated[int | None, typer.Option("--img-size", help="Input side (pixels).")] = None,
    out: Annotated[Path | None, typer.Option(help="metrics.json to write.")] = None,
    params: ParamsOpt = None,
    set_: SetOpt = None,
) -> None:
    """COCO AP (pycocotools) of a .pth or .onnx model on a dataset; writes metrics.json."""
    from yolox.data.prepare import load_dataset
    from yolox.evaluate.coco_eval import evaluate
    from yolox.inference import OnnxBackend, TorchBackend

    p = _params(params, set_)
    from yolox.assets import resolve_weights

    weights = str(resolve_weights(weights or str(Path(p.train.output_dir) / "last.pth")))
    dataset = load_dataset(data or p.data.prepared_dir, split, images)
    if weights.endswith(".onnx"):
        backend: Any = OnnxBackend(weights)
        size = img_size or int(backend.metadata.get("input_size", p.model.input_size))
    else:
        net, _names, size0, _ = _torch_model(weights, model)
        backend, size = TorchBackend(net), img_size or p.eval.img_size or size0
    result = evaluate(backend, dataset, size, p.eval)
    path = result.write(out or p.eval.metrics_path)
    table = Table(title=f"{Path(weights).name} on {data or p.data.prepared_dir} ({split}, {size}px)")
    for k in result.metrics:
        table.add_column(k)
    table.add_row(*(f"{v:.4f}" for v in result.metrics.values()))
    console.print(table)
    console.print(f"metrics: {path}")


@app.command()
def export(
    weights: Annotated[str | None, typer.Option(help="A .pth checkpoint.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name (e.g. yolox-nano).")] = None,
    img_size: Annotated[int | None, typer.Option("--img-size", help="Input side (pixels).")] = None,
    out: Annotated[Path | None, typer.Option(help="The .onnx to write.")] = None,
    check_images: Annotated[Path | None, typer.Option(help="Folder of real images for the ONNX check.")] = None,
    params: ParamsOpt = None,
    set_: SetOpt = None,
) -> None:
    """Export to ONNX and check it against PyTorch with ONNX Runtime (TensorRT too on a CUDA machine)."""
    from yolox.errors import ExportError
    from yolox.export.onnx_export import check_onnx, export_onnx
    from yolox.export.tensorrt import build_engine
    from yolox.predict import list_images

    p = _params(params, set_)
    net, names, size0, name = _torch_model(weights or str(Path(p.train.output_dir) / "last.pth"), model)
    size = img_size or (p.model.input_size if params else size0)
    out = out or Path(p.export.onnx_path)
    folder = check_images or Path(p.data.prepared_dir) / "images"
    if not folder.is_dir():
        raise ConfigError(f"no images for the export check at {folder}: pass --check-images DIR")
    path = export_onnx(net, out, size, names, name, p.export.opset, p.export.dynamic_batch, p.export.simplify)
    check = check_onnx(net, path, list_images(folder)[: p.export.check_images], size, p.export.max_abs_diff)
    console.print(f"{path}: max |onnx - torch| = {check.max_abs_diff:.2e} on {check.num_check_images} images")
    if not check.passed:
        raise ExportError(f"{path} differs from PyTorch by {check.max_abs_diff:.3g} > {p.export.max_abs_diff}")
    if p.export.tensorrt:
        build_engine(path, path.with_suffix(".engine"), size)


@app.command()
def predict(
    weights: Annotated[str, typer.Option(help="A .pth checkpoint or an .onnx model.")],
    source: Annotated[Path, typer.Option(help="An image or a folder of images.")],
    out: Annotated[Path, typer.Option(help="Output folder (drawn images + predictions.json).")],
    model: Annotated[str | None, typer.Option(help="Model name for an authors' .pth.")] = None,
    img_size: Annotated[int | None, typer.Option("--img-size")] = None,
    conf: Annotated[float, typer.Option(help="Score threshold.")] = 0.25,
    nms: Annotated[float, typer.Option(help="NMS IoU threshold.")] = 0.45,
) -> None:
    """Detect objects in images: drawn boxes and a JSON of detections."""
    from yolox.inference import OnnxBackend, TorchBackend
    from yolox.predict import predict as run_predict

    if weights.endswith(".onnx"):
        from yolox.export.onnx_export import read_metadata

        backend: Any = OnnxBackend(weights)
        meta = read_metadata(weights)
        names = list(meta.get("names") or [f"class_{i}" for i in range(backend.num_classes)])
        size = img_size or int(meta.get("input_size", 416))
    else:
        net, names, size0, _ = _torch_model(weights, model)
        backend, size = TorchBackend(net), img_size or size0
    result = run_predict(backend, source, out, names, size, conf, nms)
    console.print(f"{result.detections} detections on {result.images} images -> {result.out_dir} ({result.json_path.name})")


def _decision_table(decision: Any) -> Table:
    cand, champ = decision.candidate, decision.champion
    title = (f"gate: {decision.model} v{cand.version} vs champion "
             f"{'v' + str(champ.version) if champ else '(none)'} on val set {cand.val_set}")
    table = Table(title=title)
    for col in ("rule", "threshold", "value", "result", "detail"):
        table.add_column(col)
    for r in decision.rules:
        fmt = [f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else str(v)) for v in (r.threshold, r.value)]
        table.add_row(r.name, *fmt, "[green]pass[/]" if r.passed else "[bold red]FAIL[/]", r.detail)
    return table


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
    from yolox.evaluate.gate import run_gate

    p = _params(params, set_)
    decision = run_gate(p, candidate_version, prepared, dry_run)
    Console().print(_decision_table(decision))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(decision.to_json(), indent=2) + "\n")
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
    from yolox.tracking.registry import champion_history
    from yolox.tracking.registry import promote as do_promote
    from yolox.tracking.registry import rollback as do_rollback

    p = _params(params, set_)
    name, alias = p.tracking.registered_model, p.gate.champion_alias
    if (version is None) == (not rollback):
        raise ConfigError("yolox promote: pass exactly one of --version N or --rollback")
    event = do_rollback(name, alias, reason) if rollback else do_promote(name, version, "manual", alias, note=reason)
    console.print(f"{name}: {alias} is version {event.version} ({event.how}; before: {event.previous or 'none'})",
                  highlight=False)
    table = Table(title=f"{name}: {alias} history (latest last)")
    for col in ("#", "version", "previous", "how", "at", "by"):
        table.add_column(col)
    for e in champion_history(name)[-10:]:
        table.add_row(str(e.seq), e.version, e.previous or "-", e.how, e.at, e.by)
    Console().print(table)

@app.command()
def pipeline(params: ParamsOpt = Path("params/default.yaml"), set_: SetOpt = None) -> None:
    """Run the whole pipeline (Prefect flow train-yolox): prepare -> train -> evaluate -> export -> register -> gate."""
    _params(params, set_)  # validate before starting Prefect
    os.environ.setdefault("PREFECT_HOME", str(Path.cwd() / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    sys.path.insert(0, str(Path.cwd()))
    from flows.train_yolox import train_yolox

    summary = train_yolox(params_file=str(params), overrides=list(set_ or []))
    console.print_json(json.dumps(summary))


@app.command("augment-preview")
def augment_preview(
    params: ParamsOpt = Path("params/default.yaml"),
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("reports/augment_preview.png"),
    n: Annotated[int, typer.Option(help="Number of samples.")] = 16,
    prepared: Annotated[Path | None, typer.Option(help="Prepared dataset.")] = None,
) -> None:
    """Save a grid of augmented training samples with their boxes (what the model is fed)."""
    from yolox.data.dataset import augment_preview as preview
    from yolox.data.records import load_prepared

    p = _params(params)
    ds = load_prepared(prepared or p.data.prepared_dir, "train")
    path = preview(ds, p.augment, p.model.name, p.model.input_size, n=n, seed=p.train.seed, out_path=out)
    console.print(f"augmentation preview: {path}")


def run() -> None:
    """Entry point with user errors turned into one line and exit code 1."""
    try:
        app(standalone_mode=False)
    except YoloxError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        sys.exit(1)
    except Exception as err:
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, click.exceptions.Abort):
            sys.exit(1)
        raise


if __name__ == "__main__":
    run()
