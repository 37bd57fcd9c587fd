"""The evaluate stage: COCO AP (pycocotools) of a model file on a dataset split, written to files and, with a run,
logged to MLflow with its plots (:class:`Evaluation`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from yolox.config import PipelineParams
from yolox.data.prepare import load_dataset
from yolox.errors import DataError
from yolox.evaluate.coco_eval import evaluate as coco_evaluate
from yolox.evaluate.plots import evaluation_figures, save_figures, training_curves
from yolox.inference import load_model, model_input_size
from yolox.tracking.run import PER_CLASS_TABLE, attach

log = logging.getLogger("yolox.evaluate")


@dataclass(frozen=True)
class Evaluation:
    """COCO AP of a model on one dataset split (fractions), and the files written."""

    metrics: dict[str, float]
    per_class: dict[str, float]
    metrics_path: Path
    per_class_path: Path
    img_size: int
    num_images: int
    weights: str

    @property
    def ap(self) -> float:
        return float(self.metrics["AP50_95"])


def evaluate(params: PipelineParams, weights: str | Path | None = None, data: str | Path | None = None,
             split: str = "val", images: str | None = None, img_size: int | None = None,
             model_name: str | None = None, out: str | Path | None = None, run_id: str | None = None,
             history: list[dict[str, float]] | None = None, progress: bool = True,
             plots_dir: str | Path | None = None) -> Evaluation:
    """COCO AP50:95 etc. of ``weights`` (a .pth of this project or the authors', or an .onnx; default
    ``<train.output_dir>/last.pth``) on ``split`` of ``data`` (a prepared folder, YOLO ``dataset.yaml`` or
    folder, COCO json, or dataset name; default ``data.prepared_dir``), at the model's own input size unless
    ``img_size`` / ``eval.img_size`` says otherwise. Writes ``eval.metrics_path`` (headline metrics) and
    ``eval.per_class_path`` (AP per class); with ``run_id``, logs to that run the headline APs as metrics
    (``eval/AP50_95`` ...), AP per class as a table (:data:`yolox.tracking.run.PER_CLASS_TABLE`), both files and
    the plots; with ``plots_dir``, writes the plots there as PNG files too (what ``dvc plots show`` displays offline).

    Raises:
        AssetError, DataError, CheckpointError, ConfigError: unknown or unreadable weights or data.
    """
    weights = str(weights or Path(params.train.output_dir) / "last.pth")
    backend, meta = load_model(weights, model_name)
    size = model_input_size(meta, img_size or params.eval.img_size)
    if hasattr(backend, "check_size"):  # an ONNX model exported for one input size: before reading the data
        backend.check_size(size)
    dataset = load_dataset(str(data or params.data.prepared_dir), split, images)
    if not dataset.records:
        raise DataError(f"{data or params.data.prepared_dir}: the {split!r} split has no images: nothing to evaluate")
    result = coco_evaluate(backend, dataset, size, params.eval, progress=progress)
    metrics_path, per_class_path = result.write(out or params.eval.metrics_path,
                                                None if out else params.eval.per_class_path)
    run = attach(params, run_id)
    if run is not None or plots_dir:
        figures, confusion = evaluation_figures(result, dataset, params.serve.conf_thresh)
        if history:
            figures["plots/training_curves.png"] = training_curves(history)
        if plots_dir:
            save_figures(figures, plots_dir)
        if run is not None:
            from collections import Counter

            # the headline, as metrics.json has it (6 decimals): what runs are sorted and compared by
            run.log_metrics({f"eval/{k}": round(v, 6) for k, v in result.metrics.items()})
            boxes = Counter(dataset.names[label] for rec in dataset.records for label in rec.labels.tolist())
            if result.per_class:     # a table, not 80 one-point metrics (the plot per_class_ap.png draws it)
                run.log_table([{**row, "boxes": boxes[row["class"]]} for row in result.per_class_rows()],
                              PER_CLASS_TABLE)
            run.log_artifact(metrics_path, "metrics")
            run.log_artifact(per_class_path, "metrics")
            run.log_figures(figures)
            run.log_dict(confusion, "plots/confusion_matrix.json")
    return Evaluation(dict(result.metrics), dict(result.per_class), metrics_path, per_class_path, size,
                      result.num_images, weights)
