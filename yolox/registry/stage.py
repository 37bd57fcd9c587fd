"""The registry stages: register an export as a new version with the challenger alias (:func:`register`), and gate
it against the champion (:func:`gate`: :func:`yolox.registry.gate.run_gate`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolox.config import PipelineParams
from yolox.errors import StageError
from yolox.evaluate.stage import Evaluation
from yolox.export.stage import ExportedModel
from yolox.export.tensorrt import build_config_tags
from yolox.registry.gate import run_gate
from yolox.registry.versions import log_and_register
from yolox.serve.pyfunc import BUDGETS
from yolox.tracking.run import MlflowRun

log = logging.getLogger("yolox.registry")


@dataclass(frozen=True)
class RegisteredModel:
    """A registered model version (``version`` as MLflow's string) and its URI."""

    name: str
    version: str
    uri: str


def register(params: PipelineParams, exported: ExportedModel, evaluation: Evaluation, run_id: str,
             data_version: str, lineage: dict[str, str] | None = None) -> RegisteredModel:
    """Register ``exported`` (its ONNX pyfunc, with the serving thresholds of ``params.serve``) as a new
    version of ``tracking.registered_model`` with the ``gate.challenger_alias``, logged to run ``run_id``, tagged
    with ``lineage`` (:func:`lineage_of`: what the skip rule compares) and the ``warm_start`` it trained from. With
    an end2end serving graph (``export.serve_end2end``) the pyfunc carries both and serves from the end2end one
    (:class:`yolox.serve.pyfunc.YoloxOnnxModel`); the version's tag ``serving_variant`` says which graph serves.

    Raises:
        TrackingError: the registry refused.
    """
    if exported.sample_image is None:
        raise StageError("register: the export check was skipped, so there is no sample image for the signature")
    sp = params.serve
    int8 = {"int8_AP50_95": f"{exported.int8.int8_ap:.6f}", "int8_fp32_AP50_95": f"{exported.int8.fp32_ap:.6f}",
            "int8_val_set": exported.int8.val_set, "int8_onnx": f"onnx/{exported.int8.onnx.name}",
            "int8_fp32_onnx": f"onnx/{exported.onnx.name}"} if exported.int8 is not None else {}
    ov = exported.openvino
    openvino = {"openvino_check": ov.check, "openvino_xml": f"openvino/{ov.xml.name}"} if ov is not None else {}
    if ov is not None and ov.int8_xml is not None:   # the INT8 rule's figures and the IRs to re-measure them from
        openvino.update({"openvino_int8_AP50_95": f"{ov.int8_ap:.6f}", "openvino_fp32_AP50_95": f"{ov.fp32_ap:.6f}",
                         "openvino_val_set": ov.val_set, "openvino_int8_xml": f"openvino/{ov.int8_xml.name}",
                         "openvino_fp32_xml": f"openvino/{ov.xml.name}"})
    serving = {"serving_variant": "end2end"} if exported.serving is not None or exported.variant == "end2end" \
        else {"serving_variant": exported.variant}
    engine: dict[str, str] = {}
    if (e := exported.engine_eval) is not None:     # the engine beside the ONNX: where it runs, what it scores

        engine = {**build_config_tags(e.config), "tensorrt_engine": f"tensorrt/{e.path.name}",
                  "tensorrt_onnx": f"onnx/{exported.onnx.name}",
                  "tensorrt_AP50_95": f"{e.ap:.6f}", "tensorrt_onnx_AP50_95": f"{e.onnx_ap:.6f}",
                  "tensorrt_val_set": e.val_set}
    mv = log_and_register(run_id, exported.onnx, params.tracking.registered_model, exported.sample_image,
                          {"data_version": data_version, "AP50_95": f"{evaluation.ap:.4f}",
                           "model": exported.meta.name, "input_size": str(exported.meta.input_size),
                           "export_check": exported.check, "export_max_abs_diff": f"{exported.max_abs_diff or 0:.3g}",
                           "export_variant": exported.variant, **serving, **int8, **engine, **openvino,
                           **(lineage or {})},
                          sp.conf_thresh, sp.nms_thresh, sp.max_det, alias=params.gate.challenger_alias,
                          budgets={k: getattr(sp, k) for k in BUDGETS},
                          end2end_path=exported.serving)
    MlflowRun.attach(run_id).set_tags({"registered_version": mv.version})
    return RegisteredModel(mv.name, mv.version, mv.model_uri)


def gate(params: PipelineParams, candidate_version: str | None = None, prepared_dir: str | Path | None = None,
         data_version: str | None = None, run_id: str | None = None, dry_run: bool = False) -> Any:
    """Gate the candidate (default: the challenger) against the champion on the prepared val set and move the
    champion alias when it passes (:func:`yolox.registry.gate.run_gate`). Returns the
    :class:`~yolox.registry.gate.Decision` (``.promoted``: the alias moved)."""
    artifact = "gate/decision.json" if run_id else None
    return run_gate(params, candidate_version, prepared_dir, dry_run, data_version, run_id, artifact)
