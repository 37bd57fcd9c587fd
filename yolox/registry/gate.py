"""The gate run: measure the candidate, the champion and the references on the same val set, decide with the pure
rules of :mod:`yolox.registry.rules`, record the decision and move the champion alias.

:func:`evaluate_registered` evaluates a registered version (its ONNX, through the pyfunc the registry serves) on a
val set, :func:`evaluate_base` the base weights, :func:`evaluate_golden` both models on the fixed regression set,
:func:`measure_p90_ms` the candidate's latency; :func:`record_decision` writes the decision to MLflow and
:func:`apply_decision` moves the champion alias (compare-and-set: only if the champion is still the one that was
evaluated) and records the new best AP. :func:`run_gate` chains them; ``yolox gate``, ``yolox pipeline`` and the
Prefect flow all call it (through the registry stage, :func:`yolox.registry.stage.gate`).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from yolox.assets import resolve_weights
from yolox.config import EvalParams, GateParams, PipelineParams, registry_reference
from yolox.data.prepare import load_dataset
from yolox.data.records import DetectionDataset, load_prepared, val_set_id
from yolox.errors import CheckpointError, DataError, ExportError, GateError
from yolox.evaluate.coco_eval import evaluate
from yolox.export import tensorrt
from yolox.export.benchmark import latency_ms
from yolox.inference import OnnxBackend, OpenVinoBackend, TorchBackend, load_torch_model
from yolox.registry.rules import (
    METRIC,
    Decision,
    ModelEval,
    decide,
)
from yolox.registry.versions import (
    VersionInfo,
    alias_version,
    describe_version,
    load_version_model,
    promote,
    registered_model_tags,
    set_registered_model_tag,
    set_version_tags,
    version_info,
)
from yolox.tracking.run import MlflowRun

log = logging.getLogger("yolox.gate")


def int8_figures(info: VersionInfo, dataset: DetectionDataset, val_set: str, params: EvalParams
                 ) -> list[dict[str, Any]]:
    """The INT8 figures of a registered version that the gate's INT8 rules compare
    (:func:`yolox.registry.rules.int8_rule`), each measured on ``val_set``: ``{"runtime", "fp32_ap", "int8_ap",
    "val_set"}`` (+ ``"remeasured": True``, or ``"error"``). The ONNX Runtime INT8 model (``export.int8``: tags
    ``int8_AP50_95``, ``int8_fp32_AP50_95``), an INT8 TensorRT engine (tags ``tensorrt_AP50_95`` against its
    ONNX model's ``tensorrt_onnx_AP50_95``) and an OpenVINO INT8 IR (tags ``openvino_int8_AP50_95`` against its FP32
    IR's ``openvino_fp32_AP50_95``) each come with the val set the export stage measured them on
    (``int8_val_set``, ``tensorrt_val_set``, ``openvino_val_set``); a figure from another val set, or from none recorded, is measured
    again now on ``dataset`` from the models the version's run logged (:func:`_remeasured`). Empty: no INT8
    model, no INT8 rule."""
    tags, figures = info.tags, []
    if "int8_AP50_95" in tags and "int8_fp32_AP50_95" in tags:
        figures.append({"runtime": "onnxruntime", "fp32_ap": float(tags["int8_fp32_AP50_95"]),
                        "int8_ap": float(tags["int8_AP50_95"]), "val_set": tags.get("int8_val_set"),
                        "fp32_model": tags.get("int8_fp32_onnx"), "int8_model": tags.get("int8_onnx")})
    if tags.get("tensorrt_precision") == "int8" and "tensorrt_AP50_95" in tags:
        figures.append({"runtime": "tensorrt", "fp32_ap": float(tags["tensorrt_onnx_AP50_95"]),
                        "int8_ap": float(tags["tensorrt_AP50_95"]), "val_set": tags.get("tensorrt_val_set"),
                        "fp32_model": tags.get("tensorrt_onnx"), "int8_model": tags.get("tensorrt_engine")})
    if "openvino_int8_AP50_95" in tags and "openvino_fp32_AP50_95" in tags:
        figures.append({"runtime": "openvino", "fp32_ap": float(tags["openvino_fp32_AP50_95"]),
                        "int8_ap": float(tags["openvino_int8_AP50_95"]), "val_set": tags.get("openvino_val_set"),
                        "fp32_model": tags.get("openvino_fp32_xml"), "int8_model": tags.get("openvino_int8_xml")})
    return [f if f["val_set"] == val_set else _remeasured(info, f, dataset, val_set, params) for f in figures]


def _remeasured(info: VersionInfo, figure: dict[str, Any], dataset: DetectionDataset, val_set: str,
                params: EvalParams) -> dict[str, Any]:
    """``figure`` measured again on ``dataset`` (``val_set``): its FP32 model and its INT8 model (ONNX; a TensorRT
    engine with its ONNX model; OpenVINO IRs, each ``.xml`` with its ``.bin``) downloaded from the version's run,
    AP50:95 through the one evaluator.
    A figure that cannot be measured here (no run, no logged model, an engine built for another GPU or none
    here) comes back with ``"error"`` (the rule then fails: a figure from other data is never compared)."""
    was = figure["val_set"] or "no recorded val set"
    out = {"runtime": figure["runtime"], "val_set": val_set, "remeasured": True}
    if not (info.run_id and figure["fp32_model"] and figure["int8_model"]):
        return {**out, "error": f"measured on {was}, and the version's run records no models to measure again"}
    import mlflow
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="yolox-gate-int8-") as tmp:
        try:
            fp32_path, int8_path = (Path(mlflow.artifacts.download_artifacts(
                run_id=info.run_id, artifact_path=figure[key], dst_path=tmp)) for key in ("fp32_model", "int8_model"))
            if figure["runtime"] == "openvino":    # each IR's weights beside its graph
                for key in ("fp32_model", "int8_model"):
                    mlflow.artifacts.download_artifacts(run_id=info.run_id, dst_path=tmp,
                                                        artifact_path=str(Path(figure[key]).with_suffix(".bin")))
                fp32, int8 = OpenVinoBackend(fp32_path), OpenVinoBackend(int8_path)
            else:
                fp32 = OnnxBackend(fp32_path)
                int8 = OnnxBackend(int8_path) if figure["runtime"] == "onnxruntime" else \
                    tensorrt.TensorRTBackend(int8_path, fp32_path)
        except (ExportError, CheckpointError, OSError, MlflowException) as err:
            return {**out, "error": f"measured on {was}; cannot measure it here: {err}"}
        size = fp32.meta.input_size if fp32.meta else info.tags.get("input_size")
        fp32_ap, int8_ap = (evaluate(b, dataset, int(size), params, progress=False).metrics[METRIC] for b in (fp32, int8))
    log.info("%s %s v%s INT8 re-measured on %s (its figures were from %s): %.4f vs FP32 %.4f", figure["runtime"],
             info.name, info.version, val_set, was, int8_ap, fp32_ap)
    return {**out, "fp32_ap": fp32_ap, "int8_ap": int8_ap}


def measure_p90_ms(model: Any, dataset: DetectionDataset, params: PipelineParams) -> float:
    """p90 latency (ms) of a loaded registered model (``.backend``, ``.input_size``) at batch 1 on the val
    images, at the serving thresholds (:func:`yolox.export.benchmark.latency_ms`, ``export.benchmark_*`` repeats)."""
    import cv2

    frames = [img for img in (cv2.imread(str(r.path)) for r in dataset.records[:8]) if img is not None]
    if not frames:
        raise DataError("latency rule: none of the val images can be read")
    sp, ep = params.serve, params.export
    _, p90 = latency_ms(model.backend, frames, model.input_size, sp.conf_thresh, sp.nms_thresh, sp.max_det,
                        ep.benchmark_warmup, ep.benchmark_repeats)
    return p90


def evaluate_registered(name: str, version: str, dataset: DetectionDataset, params: EvalParams,
                        val_set: str | None = None, data_version: str | None = None,
                        same_names: bool = False) -> tuple[ModelEval, Any]:
    """Evaluate registered version ``version`` of ``name``: its ONNX, loaded through the registered pyfunc
    (the artifact that is served), run by ONNX Runtime on ``dataset`` at the model's own input size.

    Returns:
        (the :class:`ModelEval`, the full :class:`yolox.evaluate.coco_eval.EvalResult`).

    Raises:
        TrackingError: the version cannot be loaded. DataError: class counts differ (or, with ``same_names``, the
            class names).
    """
    model = load_version_model(name, version)
    if same_names and tuple(model.names) != tuple(dataset.names):
        raise DataError(f"the classes {list(dataset.names)[:5]} of this dataset are not {name} v{version}'s "
                        f"{list(model.names)[:5]}: give a dataset with the model's classes")
    result = evaluate(model.backend, dataset, model.input_size, params, progress=False)
    ev = _model_eval(str(version), result, dataset, val_set, data_version)
    log.info("%s v%s: %s %.4f on %d images (%s)", name, version, METRIC, ev.ap, ev.num_images, ev.val_set)
    return ev, result


def _model_eval(version: str | None, result: Any, dataset: DetectionDataset, val_set: str | None,
                data_version: str | None) -> ModelEval:
    boxes: dict[str, int] = {}
    for rec in dataset.records:
        for label in rec.labels.tolist():
            boxes[dataset.names[label]] = boxes.get(dataset.names[label], 0) + 1
    return ModelEval(version, dict(result.metrics), val_set or val_set_id(dataset), data_version,
                     result.num_images, dict(result.per_class), dict(sorted(boxes.items())))


def _base_weights(params: PipelineParams) -> str | None:
    """The weights a first candidate started from: ``model.weights``, or, when that names a registry version
    (``champion``: none holds it yet, since this is asked only without a champion), ``model.fallback_weights``."""
    weights = params.model.weights
    return params.model.fallback_weights if registry_reference(weights) is not None else weights


def evaluate_base(weights: str | None, model_name: str, input_size: int, dataset: DetectionDataset,
                  params: EvalParams, val_set: str | None = None, data_version: str | None = None
                  ) -> tuple[ModelEval | None, str | None]:
    """The base weights a candidate was trained from (``model.weights``), evaluated with PyTorch at
    ``input_size`` on ``dataset``: ``(ModelEval, None)``, or ``(None, why not)`` when there are none (trained
    from scratch) or they predict another class count (a fine-tune to new classes).

    Raises:
        AssetError, CheckpointError: the weights cannot be found or read.
    """
    if not weights:
        return None, "trained from scratch (model.weights is null): no base weights"

    path = resolve_weights(weights)
    model, meta = load_torch_model(path, model_name)
    if meta.num_classes != dataset.num_classes:
        return None, (f"base weights {path.name} predict {meta.num_classes} classes, the val set has "
                      f"{dataset.num_classes}: a fine-tune to new classes, not comparable")
    result = evaluate(TorchBackend(model.eval()), dataset, input_size, params, progress=False)
    ev = _model_eval(None, result, dataset, val_set, data_version)
    log.info("base weights %s: %s %.4f on %d val images", path.name, METRIC, ev.ap, ev.num_images)
    return ev, None


def evaluate_golden(params: PipelineParams, name: str, candidate: str, champion: str | None,
                    val: DetectionDataset | None = None) -> tuple[ModelEval, ModelEval | None, str | None]:
    """Evaluate the candidate and the champion (registered versions) on the golden set ``gate.golden`` (all its
    images, :func:`yolox.data.prepare.load_dataset` with ``split=None``). Returns ``(candidate, champion or None,
    why the champion could not be evaluated or None)``. Golden images found in ``val`` (by file name) are logged:
    a golden set should be kept out of the training data too.

    Raises:
        AssetError, DataError: the golden set cannot be read, or its classes are not the candidate's.
    """
    golden = load_dataset(str(params.gate.golden), split=None, params=params.data)
    overlap = {r.path.name for r in golden.records} & {r.path.name for r in val.records} if val is not None else set()
    if overlap:
        log.warning("golden set %s: %d of its images are also in the val split (e.g. %s)", params.gate.golden,
                    len(overlap), min(overlap))
    golden_id = val_set_id(golden)
    cand, _ = _golden_eval(name, candidate, golden, params.eval, golden_id)
    if champion is None:
        return cand, None, None
    try:
        champ, _ = _golden_eval(name, champion, golden, params.eval, golden_id)
    except (DataError, CheckpointError) as err:
        return cand, None, f"version {champion}: {err}"
    return cand, champ, None


def _golden_eval(name: str, version: str, golden: DetectionDataset, params: EvalParams, golden_id: str
                 ) -> tuple[ModelEval, Any]:
    ev, result = evaluate_registered(name, version, golden, params, golden_id, same_names=True)
    log.info("golden set: %s v%s %s %.4f on %d images", name, version, METRIC, ev.ap, ev.num_images)
    return ev, result


def record_decision(decision: Decision, artifact_file: str = "gate/decision.json") -> None:
    """Write the decision to MLflow: json artifact on ``decision.mlflow_run_id`` (when set), and on the
    candidate version tags (``gate.*``) and its description: its status line (:meth:`Decision.status_note`), then
    the Markdown record; the status lines of versions whose aliases moved meanwhile (the one the candidate took
    ``challenger`` from) are rewritten too (:func:`yolox.registry.versions.describe_version`)."""
    if not decision.decided_at:
        decision.decided_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if decision.candidate.version is not None:
        set_version_tags(decision.model, decision.candidate.version, decision.tags())
        describe_version(decision.model, decision.candidate.version, decision.markdown(), decision.status_note())
    if decision.mlflow_run_id:
        run = MlflowRun.attach(decision.mlflow_run_id)
        run.log_dict(decision.to_json(), artifact_file)
        run.log_metrics(decision.metrics())
        run.set_tags({"gate.decision": decision.decision, "gate.outcome": decision.outcome})


def apply_decision(decision: Decision, params: GateParams, dry_run: bool = False) -> Decision:
    """Move the champion alias to the candidate when the decision is ``promote`` (unless ``dry_run``).

    Compare-and-set: the alias moves only if the champion is still the version that was evaluated
    (:func:`yolox.registry.versions.promote` with ``expected_champion``); if another promotion won in
    between, nothing moves and ``outcome`` says so. Sets ``decision.outcome`` and returns the decision.

    Raises:
        TrackingError: the registry refused the operation.
    """
    version = decision.candidate.version
    if not decision.promote:
        decision.outcome = f"not promoted: version {version} stays {params.challenger_alias}"
    elif dry_run:
        decision.outcome = "dry run: nothing moved"
    else:
        expected = decision.champion.version if decision.champion else None
        try:
            p = promote(decision.model, str(version), "gate", alias=params.champion_alias,
                        expected_champion=expected, note=decision.reason())
        except GateError as err:  # the champion moved while this gate ran: its comparison is stale
            decision.outcome = f"not promoted: {err}"
            decision.extra["stale"] = True
        else:
            decision.outcome = (f"promoted: version {p.version} is {params.champion_alias} "
                                f"(previous: {p.previous or 'none'})")
            record_best_ap(decision.model, decision.candidate.val_set, decision.candidate.ap, str(version))
    log.info("gate: %s", decision.outcome)
    return decision


def export_check_of(name: str, version: str) -> bool | None:
    """The candidate's recorded ONNX check (version tag ``export_check``, else its run's tag), or None."""
    info = version_info(name, version)
    value = info.tags.get("export_check") or info.run_tags.get("export_check")
    return None if value is None else value == "passed"


def run_gate(params: PipelineParams, candidate_version: str | None = None, prepared_dir: str | Path | None = None,
             dry_run: bool = False, data_version: str | None = None, run_id: str | None = None,
             artifact_file: str | None = None) -> Decision:
    """Evaluate the candidate (default: the challenger), the current champion and, with no champion yet,
    the base weights on the prepared val set of ``params``; decide; and (unless ``dry_run``, which writes
    nothing) promote, and record the decision (``artifact_file``, default ``gate/decision-<time>.json``, on
    ``run_id``, default the candidate's run; ``gate.*`` version tags; the best AP per val set).

    Raises:
        GateError: no candidate, or the candidate is already the champion. DataError: no prepared val set.
        TrackingError: the registry cannot be reached.
    """
    name, gp = params.tracking.registered_model, params.gate
    if candidate_version is None:
        mv = alias_version(name, gp.challenger_alias)
        if mv is None:
            raise GateError(f"registered model {name!r} has no {gp.challenger_alias!r} version: pass "
                            "--candidate-version N or run the pipeline first")
        candidate_version = str(mv.version)
    info = version_info(name, str(candidate_version))
    champion = alias_version(name, gp.champion_alias)
    if champion is not None and str(champion.version) == info.version:
        raise GateError(f"{name} version {info.version} already holds {gp.champion_alias!r}: nothing to decide")
    dataset = load_prepared(prepared_dir or params.data.prepared_dir, "val")
    val_set = val_set_id(dataset)
    cand, _ = evaluate_registered(name, info.version, dataset, params.eval, val_set, data_version)
    p90 = None
    if gp.max_p90_ms is not None:
        p90 = measure_p90_ms(load_version_model(name, info.version), dataset, params)
    champ, error, base, base_note = None, None, None, None
    if champion is not None:
        try:
            champ, _ = evaluate_registered(name, str(champion.version), dataset, params.eval, val_set, data_version)
        except (DataError, CheckpointError) as err:  # e.g. the champion predicts other classes
            error = f"version {champion.version}: {err}"
    elif gp.base_check:
        base, base_note = evaluate_base(_base_weights(params), params.model.name, params.model.input_size,
                                        dataset, params.eval, val_set, data_version)
    best = best_ap(name, val_set)
    if champ is not None and not dry_run:
        best = record_best_ap(name, val_set, champ.ap, str(champion.version)) or best
    elif champ is not None and (best is None or champ.ap > best["ap"]):
        best = {"ap": round(champ.ap, 6), "version": str(champion.version)}
    golden = evaluate_golden(params, name, info.version, str(champion.version) if champion is not None else None,
                             dataset) if gp.golden else None
    decision = decide(name, cand, champ, export_check_of(name, info.version), gp, error, base, best, base_note,
                      int8_figures(info, dataset, val_set, params.eval), p90, golden)
    decision.mlflow_run_id = run_id or info.run_id
    decision.decided_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    apply_decision(decision, gp, dry_run)
    if not dry_run:
        stamp = decision.decided_at.replace(":", "").replace("-", "")
        record_decision(decision, artifact_file or f"gate/decision-{stamp}.json")
    return decision


def _best_tag(val_set: str) -> str:
    return "gate.best." + val_set.replace(":", "-")


def best_ap(name: str, val_set: str) -> dict[str, Any] | None:
    """``{"ap", "version"}``: the best AP50:95 a champion of ``name`` reached on ``val_set``, or None."""
    raw = registered_model_tags(name).get(_best_tag(val_set))
    return json.loads(raw) if raw else None


def record_best_ap(name: str, val_set: str, ap: float, version: str) -> dict[str, Any] | None:
    """Raise the recorded best AP of ``val_set`` to ``ap`` (by ``version``) if it is higher; returns the best."""
    best = best_ap(name, val_set)
    if best is None or ap > float(best["ap"]) + 1e-12:
        best = {"ap": round(float(ap), 6), "version": str(version)}
        set_registered_model_tag(name, _best_tag(val_set), json.dumps(best))
    return best
