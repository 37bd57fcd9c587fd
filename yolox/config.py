"""Params of every stage: the one source of defaults, units and allowed values.

YAML files under ``params/`` hold overrides only; they are validated against these models, so an
unknown key or a bad value is rejected with its dotted field path and what is allowed, e.g.::

    params/default.yaml: train.epochs: Input should be greater than or equal to 1 (got 0)

DVC reads the same YAML files (``params:`` in ``dvc.yaml``), MLflow logs them flattened with dotted
names (``train.epochs``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import annotated_types
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from yolox.errors import ConfigError
from yolox.files import regular_file_problem
from yolox.models.meta import MAX_INPUT_SIZE, Variant
from yolox.models.table import STRIDES, ModelName

_SIZE_STEP = max(STRIDES)  # input sizes are multiples of the largest stride (the rule: yolox.models.meta.check_input_size)


CACHE_RAM_MB = 2048
"""Default of ``train.cache_ram_mb``: decoded train images held in RAM when they fit (about 2,300 640x480 images)."""


class _Params(BaseModel):
    # allow_inf_nan=False: every float param is finite (``.inf`` or ``.nan`` in a YAML file, ``--conf nan``)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)


def _scale_range(value: tuple[float, float]) -> tuple[float, float]:
    """A (low, high) scale range: both > 0, low <= high."""
    lo, hi = value
    if not 0 < lo <= hi:
        raise ValueError(f"must be (low, high) with 0 < low <= high, got ({lo:g}, {hi:g})")
    return value


class DataParams(_Params):
    """prepare: where the raw dataset comes from and how it is split and validated."""

    source: str = Field(
        "coco128",
        description="A dataset name resolved through YOLOX_ASSETS_DIR or the download cache (e.g. "
        "'coco128', 'raccoon'), a YOLO dataset.yaml or folder, a Pascal VOC folder (images/ + "
        "annotations/*.xml, or a VOCdevkit VOC20xx folder: JPEGImages/, Annotations/, optional "
        "ImageSets/Main), or a COCO instances_*.json.",
    )
    images: str | None = Field(
        None, description="Image folder of a COCO json source (default: the json's folder)."
    )
    val_source: str | None = Field(
        None, description="Optional separate val split (same kinds as source); else a seeded split."
    )
    names: list[str] | None = Field(
        None, description="The class list, in index order. A Pascal VOC source's classes (an object of another class "
        "is a reported skip; default: the sorted names found); a YOLO or COCO source declares its own, which must "
        "then be these.",
    )
    val_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="Expected share of images held out for val: an image is in val when the "
        "seeded hash of its file name is below this (yolox.data.prepare.split_of), so growing data never moves an "
        "image between splits.")
    split_seed: int = Field(0, ge=0, description="Seed of the train/val split's hash.")
    min_box_size: float = Field(
        1.0, ge=0.0, description="Boxes narrower or shorter than this after clipping are skipped (pixels)."
    )
    min_image_size: int = Field(32, ge=1, description="Images with a side below this are skipped (pixels).")
    prepared_dir: str = Field("data/prepared", description="Output folder of the prepared dataset.")


_REGISTRY_REFERENCE = re.compile(
    r"^\s*(?:(?P<champion>champion)|@(?!latest\s*$|v[0-9]+\s*$)(?P<alias>[A-Za-z0-9_-]+)|"   # MLflow's alias rules
    r"version\s+(?P<version>[1-9][0-9]*))\s*$", re.IGNORECASE)


def registry_reference(weights: str | None) -> tuple[str, str] | None:
    """``("alias", NAME)`` or ``("version", N)`` when ``model.weights`` names a version of the registered model
    (``champion`` -> ``("alias", "champion")``, ``@challenger``, ``version 3``), else None (a file or a name)."""
    match = _REGISTRY_REFERENCE.match(weights or "")
    if match is None:
        return None
    if match["version"]:
        return "version", match["version"]
    return "alias", (match["alias"] or "champion")


class ModelParams(_Params):
    """The network: variant, input size and the checkpoint it starts from."""

    name: ModelName = "yolox-nano"
    input_size: int = Field(416, ge=64, le=MAX_INPUT_SIZE, multiple_of=_SIZE_STEP,
                            description="Square input side (pixels).")
    weights: str | None = Field(
        "yolox_nano.pth",
        description="Checkpoint to start from: a release file name (e.g. 'yolox_nano.pth', resolved "
        "through YOLOX_ASSETS_DIR or the download cache), a path, a version of tracking.registered_model "
        "('champion', '@<alias>' or 'version <N>': its training checkpoint, the warm start of a nightly "
        "retrain; yolox.registry.warm_start), or null to train from scratch.",
    )
    fallback_weights: str | None = Field(
        None,
        description="With weights naming a registry alias ('champion', '@<alias>'): the checkpoint to start from "
        "while no version holds that alias yet (the first night), e.g. 'yolox_nano.pth'; null: that is an error.",
    )

    @field_validator("weights")
    @classmethod
    def _weights_reference(cls, value: str | None) -> str | None:
        if value is not None and value.strip().lower().startswith(("version", "@")) \
                and registry_reference(value) is None:
            raise ValueError("a registry version is 'champion', '@<alias>' or 'version <N>' (N >= 1)")
        return value


class AugmentParams(_Params):
    """The authors' augmentation recipe (REFERENCE.md, 'Training recipe')."""

    mosaic_prob: float = Field(1.0, ge=0.0, le=1.0, description="Probability of a 4-image Mosaic.")
    mosaic_scale: tuple[float, float] = Field((0.1, 2.0), description="Random scale range of the mosaic.")
    mixup_prob: float = Field(1.0, ge=0.0, le=1.0, description="Probability of MixUp after Mosaic.")
    mixup_scale: tuple[float, float] = Field((0.5, 1.5), description="Scale range of the MixUp image.")
    enable_mixup: bool = True
    hsv_prob: float = Field(1.0, ge=0.0, le=1.0)
    flip_prob: float = Field(0.5, ge=0.0, le=1.0, description="Horizontal flip probability.")
    degrees: float = Field(10.0, ge=0.0, le=180.0, description="Max rotation (degrees).")
    translate: float = Field(0.1, ge=0.0, le=0.5, description="Max translation (fraction of the side).")
    shear: float = Field(2.0, ge=0.0, le=45.0, description="Max shear (degrees).")
    max_labels: int = Field(120, ge=1, description="At most this many boxes per image after augmentation.")
    min_box_size: float = Field(
        1.0, ge=0.0, description="Boxes narrower or shorter than this after augmentation are dropped (pixels; "
        "the authors keep min(w, h) > 1)."
    )
    multiscale_range: int = Field(
        5, ge=0, description="Multi-scale training: side drawn from input +- range*32 every 10 iterations."
    )

    @field_validator("mosaic_scale", "mixup_scale")
    @classmethod
    def _scale_ranges(cls, value: tuple[float, float]) -> tuple[float, float]:
        return _scale_range(value)


class KubernetesParams(_Params):
    """train.distributed.kubernetes: the Kubeflow ``PyTorchJob`` (kubeflow.org/v1) that runs a multi-node
    training (``yolox/train/k8s.py``). The defaults name the objects of ``infra/k8s/cluster.yaml``."""

    namespace: str = Field("yolox", min_length=1)
    image: str = Field("registry.example.com/yolox:latest", min_length=1,
                       description="The training image (infra/Dockerfile) in a registry the cluster pulls from.")
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    service_account: str = Field("yolox-train", description="Service account of the training pods.")
    work_pvc: str = Field(
        "yolox-work", min_length=1,
        description="ReadWriteMany PersistentVolumeClaim mounted at /app/data and /app/runs on every node "
        "(the prepared dataset in, the checkpoints out).",
    )
    secret_name: str = Field("yolox-secrets", description="Secret with the MLflow and S3 credentials.")
    gpus_per_node: int = Field(1, ge=0, description="nvidia.com/gpu per pod (0: a CPU-only job).")
    cpu: str = Field("8", description="CPU request per pod (Kubernetes quantity).")
    memory: str = Field("32Gi", description="Memory request and limit per pod (Kubernetes quantity).")
    shm_size: str = Field("8Gi", description="Size of /dev/shm (memory-backed) for the loader workers.")
    ttl_seconds_after_finished: int = Field(86400, ge=0, description="Seconds a finished job is kept (s).")
    watch_timeout_s: float = Field(
        7 * 24 * 3600.0, gt=0, description="Give up watching (and delete) a job running longer (s)."
    )
    pending_timeout_s: float = Field(
        1800.0, gt=0, description="Give up on a job whose pods have not all started after this long (s)."
    )


class DistributedParams(_Params):
    """train.distributed: how many processes train, where, and how they find each other (torchrun's
    elastic agent with a c10d rendezvous; ``yolox/train/launch.py``)."""

    launcher: Literal["none", "torchrun", "kubernetes"] = Field(
        "none",
        description="'none': train in this process (or in the torchrun job it was started in); 'torchrun': "
        "start torchrun agent(s) on this machine; 'kubernetes': submit a Kubeflow PyTorchJob and watch it.",
    )
    nodes: int = Field(1, ge=1, description="Machines of the job (torchrun --nnodes).")
    nproc_per_node: int | None = Field(
        None, ge=1, description="Training processes per machine (torchrun --nproc-per-node); null: one per "
        "GPU (kubernetes: gpus_per_node), 1 without a GPU.",
    )
    rdzv_endpoint: str | None = Field(
        None, description="host:port of the c10d rendezvous, reachable from every node; null: 127.0.0.1 and "
        "a free port (one node only). Kubernetes: not used (the job's first pod, <job>-worker-0:29400).",
    )
    rdzv_id: str | None = Field(
        None, description="Rendezvous id shared by the nodes of one job; null: derived from the output folder "
        "(Kubernetes: the job's name)."
    )
    local_addr: str | None = Field(
        None, description="This node's address as the others reach it (torchrun --local-addr); null: its FQDN."
    )
    max_restarts: int = Field(
        3, ge=0, description="Times the agents restart the workers after one fails (they resume from last.pth)."
    )
    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="torch.distributed backend: auto = nccl on CUDA devices, gloo on CPU."
    )
    join_timeout_s: int = Field(900, ge=1, description="How long a node waits for the others to join (s).")
    kubernetes: KubernetesParams = KubernetesParams()

    @model_validator(mode="after")
    def _multi_node_needs_an_endpoint(self) -> DistributedParams:
        if self.launcher == "torchrun" and self.nodes > 1 and not self.rdzv_endpoint:
            raise ValueError(f"nodes={self.nodes} with launcher 'torchrun' needs rdzv_endpoint (host:port of "
                             "one node, reachable from all)")
        if self.rdzv_endpoint is not None and not _is_endpoint(self.rdzv_endpoint):
            raise ValueError(f"rdzv_endpoint {self.rdzv_endpoint!r}: expected host:port, e.g. 10.0.0.1:29400")
        return self


def _is_endpoint(value: str) -> bool:
    host, _, port = value.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


class TrainParams(_Params):
    """Optimiser, schedule, EMA and loop settings (authors' COCO defaults unless noted)."""

    epochs: int = Field(300, ge=1, description="Total epochs (max_epoch).")
    batch_size: int = Field(64, ge=1, description="Total batch over all processes (images).")
    basic_lr_per_img: float = Field(0.01 / 64, gt=0.0, description="lr = basic_lr_per_img * batch_size.")
    warmup_epochs: int = Field(5, ge=0)
    warmup_lr: float = Field(0.0, ge=0.0, description="lr at iteration 0 of the warm-up.")
    min_lr_ratio: float = Field(0.05, ge=0.0, le=1.0, description="Cosine floor, as a fraction of lr.")
    no_aug_epochs: int = Field(15, ge=0, description="Last epochs without Mosaic/MixUp, with the L1 loss, at the "
                               "lr floor (min_lr_ratio * lr).")
    close_mosaic_epochs: int | None = Field(
        None, ge=0, description="Last epochs without Mosaic/MixUp, with the L1 loss, when not no_aug_epochs "
        "(which then only sets the lr floor). The authors' trainer closes the mosaic one epoch before its lr "
        "floor (at epoch + 1 == max_epoch - no_aug_epochs): no_aug_epochs + 1 reproduces it exactly.",
    )
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    ema: bool = True
    ema_decay: float = Field(0.9998, gt=0.0, lt=1.0)
    seed: int = Field(0, ge=0)
    workers: int = Field(2, ge=0, description="Data loader worker processes per training process.")
    cache_ram_mb: int = Field(
        CACHE_RAM_MB, ge=0,
        description="Decode the training images once into RAM shared by the loader workers when they all fit "
                    "in this many MiB, per training process (each DDP rank holds its own copy); 0: off. Same "
                    "samples either way (yolox/data/cache.py).")
    device: str = Field("auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'.")
    amp: bool = Field(True, description="CUDA automatic mixed precision (ignored on CPU).")
    full_batches: bool = Field(
        True, description="Every batch full, as the authors' sampler draws them: an epoch is ceil(N / batch) batches "
        "taken from an endless stream of seeded shuffled passes (yolox.data.dataset.FullBatchStream). false: one pass "
        "per epoch whose last batch holds the remaining N mod batch images, stepped at the full lr (measured to cost "
        "new-class fine-tuning AP: bench/learning.py).",
    )
    max_iters_per_epoch: int | None = Field(
        None, ge=1, description="Cap on iterations per epoch (quick runs and tests); null = full epoch."
    )
    eval_interval: int = Field(10, ge=1, description="Evaluate the EMA model on val every N epochs.")
    deterministic: bool = Field(
        False, description="Deterministic algorithms and seeded workers: same seed -> same weights (CPU)."
    )
    checkpoint_interval: int = Field(1, ge=1, description="Write last.pth every N epochs (atomic).")
    freeze: list[str] = Field(
        default_factory=list,
        description="Parameter-name prefixes kept fixed while training, e.g. ['backbone.backbone.stem'].",
    )
    output_dir: str = Field("runs/train", description="Checkpoints and logs of the training stage.")
    distributed: DistributedParams = DistributedParams()

    @model_validator(mode="after")
    def _epochs_cover_phases(self) -> TrainParams:
        for name in ("no_aug_epochs", "close_mosaic_epochs"):
            value = getattr(self, name)
            if value is not None and value > self.epochs:
                raise ValueError(f"{name} ({value}) must not exceed epochs ({self.epochs}): lower {name} or "
                                 "raise epochs (an override of train.epochs alone lowers the phases to fit)")
        return self

    @property
    def mosaic_off_epochs(self) -> int:
        """The last epochs without Mosaic/MixUp and with the L1 loss: ``close_mosaic_epochs``, else ``no_aug_epochs``."""
        return self.no_aug_epochs if self.close_mosaic_epochs is None else self.close_mosaic_epochs


PHASES = ("warmup_epochs", "no_aug_epochs", "close_mosaic_epochs", "eval_interval")
""":class:`TrainParams` fields counted in epochs within the run (:func:`fit_phases` lowers them to fit it)."""

MUST_FIT = ("no_aug_epochs", "close_mosaic_epochs")
"""The phases longer than the run are an error (:meth:`TrainParams._epochs_cover_phases`); the others are only
lowered (a warm-up or an evaluation interval longer than the run would silently never end or never come)."""


def fit_phases(raw: dict[str, Any], overrides: list[str] | None, source: str = "params") -> str | None:
    """Fit the training phases to ``train.epochs`` when an override set it: what ``train.epochs=N`` means.

    ``raw`` is the params tree with ``overrides`` (``KEY.PATH=VALUE`` strings) applied. When they set
    ``train.epochs``, each of :data:`PHASES` longer than that many epochs (from the file or the defaults)
    and not set by the overrides too is lowered to it, in place. Called by :func:`load_params` and
    :func:`params_from` before validation.

    Returns:
        One line naming what was lowered, e.g. ``train.epochs=1: lowered train.no_aug_epochs 2 -> 1,
        train.eval_interval 5 -> 1 to fit the run (override them to choose)``, or None when nothing was.

    Raises:
        ConfigError: the overrides set ``train.epochs`` and a phase of :data:`MUST_FIT` longer than it
            (names both); or they set such a phase longer than the params' ``train.epochs`` without setting
            that (names the override to add).
    """
    keys = {item.split("=", 1)[0].strip() for item in overrides or ()}
    train = raw.get("train")
    if not isinstance(train, dict):
        return None
    epochs = train.get("epochs", TrainParams.model_fields["epochs"].default)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        return None                                  # not a count: validation names it
    given = "train.epochs" in keys
    lowered = []
    for name in PHASES:
        value = train.get(name, TrainParams.model_fields[name].default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= epochs:
            continue
        explicit = f"train.{name}" in keys
        if explicit and given and name in MUST_FIT:
            raise ConfigError(f"train.{name}={value} and train.epochs={epochs}, both overridden: {name} must "
                              f"not exceed epochs; lower train.{name} or raise train.epochs")
        if explicit and not given and name in MUST_FIT:
            raise ConfigError(f"train.{name}={value} exceeds train.epochs ({epochs} in {source}): add the "
                              f"override train.epochs={value} (or more), or lower train.{name}")
        if given and not explicit:
            train[name] = epochs
            lowered.append(f"train.{name} {value} -> {epochs}")
    if not lowered:
        return None
    return f"train.epochs={epochs}: lowered {', '.join(lowered)} to fit the run (override them to choose)"


class EvalParams(_Params):
    """The authors' evaluation protocol (REFERENCE.md)."""

    conf_thresh: float = Field(0.01, ge=0.0, le=1.0, description="Keep detections with score >= this.")
    nms_thresh: float = Field(0.65, gt=0.0, le=1.0, description="Class-aware NMS IoU threshold.")
    max_det: int = Field(100, ge=1, description="Detections per image given to COCOeval.")
    batch_size: int = Field(8, ge=1)
    img_size: int | None = Field(None, ge=_SIZE_STEP, le=MAX_INPUT_SIZE, multiple_of=_SIZE_STEP,
                                 description="Input side (pixels); default: model.input_size.")
    metrics_path: str = Field("metrics.json", description="DVC metrics file written by evaluate (headline APs).")
    per_class_path: str = Field("per_class.json", description="AP50:95 per class, written beside the metrics.")


EVAL_DEFAULTS = EvalParams()
"""The evaluation thresholds' defaults, for functions that take them as keyword defaults (NMS, detect)."""


class ServeParams(_Params):
    """Thresholds of served detections: the registered model's defaults and ``yolox predict``'s (a request or
    a flag may override them). Evaluation uses :class:`EvalParams`' (the authors' protocol) instead."""

    conf_thresh: float = Field(0.25, ge=0.0, le=1.0, description="Keep detections with score >= this.")
    nms_thresh: float = Field(0.45, gt=0.0, le=1.0, description="Class-aware NMS IoU threshold.")
    max_det: int = Field(100, ge=1, description="At most this many detections per image.")
    max_rows: int = Field(
        64, ge=1, description="Serving: most images (rows) one request may hold; more is answered 413 before any is "
        "decoded.")
    max_image_pixels: int = Field(
        50_000_000, ge=1, description="Serving: most pixels (width x height, read from the image header before "
        "decoding) of one image of a request (pixels; 50 MP, e.g. 8660 x 5773, about 150 MB decoded); more is "
        "answered 413.")
    max_request_bytes: int = Field(
        100 * 2**20, ge=1, description="Serving: most bytes of image files one request may hold, all rows together "
        "(bytes, the base64-decoded size; 100 MiB); more is answered 413 before any is decoded.")
    batch_size: int = Field(
        8, ge=1, le=1024, description="Serving: images decoded and run through the model at a time (images): the "
        "decoded pixels held at once are at most batch_size x max_image_pixels x 3 bytes.")


class PredictParams(_Params):
    """``yolox predict``'s sources: limits of an http(s) URL download (a URL past them is a reported skip)."""

    download_max_mb: float = Field(50.0, gt=0.0, description="Largest image or video downloaded from a URL (MB).")
    download_timeout_s: float = Field(20.0, gt=0.0, description="Seconds to connect and between received bytes.")
    download_deadline_s: float = Field(
        120.0, gt=0.0, description="Total time of one URL's download, from connecting to the last byte, redirects "
        "included (s); each wait for the server is also at most download_timeout_s.")
    download_max_redirects: int = Field(
        5, ge=0, le=20, description="Most HTTP redirects followed for one URL (each to http or https only).")


class ExportParams(_Params):
    """ONNX export and its check against PyTorch with ONNX Runtime."""

    opset: int = Field(17, ge=17, le=21)
    dynamic_batch: bool = True
    simplify: bool = Field(True, description="Run onnxslim on the exported graph.")
    check_images: int = Field(8, ge=1, description="Real val images used to compare ONNX with PyTorch.")
    max_abs_diff: float = Field(1e-2, gt=0.0, description="Largest allowed |onnx - torch| on raw outputs.")
    onnx_path: str = Field("models/model.onnx")
    tensorrt: bool = Field(False, description="Also build a TensorRT engine when a CUDA GPU is present.")
    variant: Variant = Field(
        "raw", description="What the graph outputs (yolox.models.meta.Variant): 'raw' (B, A, 5 + C) undecoded, the "
        "authors' layout; 'decoded' boxes xyxy input pixels + scores obj * cls; 'end2end' decode + class-aware "
        "NMS in the graph (num_dets, boxes, scores, labels), with the thresholds of the `thresholds` section.",
    )
    serve_end2end: bool = Field(
        False, description="Also write an end2end graph with the serve.* thresholds baked in (<onnx stem>.end2end.onnx, "
        "checked like the main one) that the registered model serves from (NMS in the graph); requests for other "
        "thresholds fall back to the main graph. Off by default: it adds an export and a check (~9 s for the nano "
        "on 2 CPU cores) to every pipeline run.",
    )
    thresholds: Literal["serve", "eval"] = Field(
        "serve", description="Whose thresholds an end2end graph bakes in: serve.* (served detections) or eval.* "
        "(the authors' protocol, for COCO AP); `yolox export --conf/--nms/--max-det` override them.",
    )
    dynamic_hw: bool = Field(
        True, description="decoded and end2end graphs take any input height and width (multiples of 32); raw "
        "keeps the model's input size (its consumers decode with that grid).",
    )
    max_score_diff: float = Field(
        1e-4, gt=0.0, description="decoded/end2end check: largest allowed |score onnx - torch| per detection."
    )
    max_box_diff: float = Field(
        1e-2, gt=0.0, description="decoded/end2end check: largest allowed |box onnx - torch| (input pixels)."
    )
    formats: list[Literal["onnx", "openvino"]] = Field(
        default_factory=lambda: ["onnx"], min_length=1,
        description="Runtimes to export for, each checked against PyTorch on the check images: 'onnx' (ONNX "
        "Runtime; the .onnx is always written: the registered model, and what the others are converted from), "
        "'openvino' (an OpenVINO IR, <onnx stem>.xml + .bin, FP32 weights, run in f32). With `int8`, each listed "
        "runtime also gets its INT8 model (onnx: <stem>.int8.onnx; openvino: <stem>.int8.xml, NNCF) and its AP "
        "against its FP32 model's on the val set.",
    )
    int8: bool = Field(
        False, description="Also write an INT8 model for each runtime of `formats`, calibrated on prepared train "
        "images, its AP measured against the FP32 model's on the val set: ONNX Runtime static QDQ quantization "
        "(<onnx stem>.int8.onnx), OpenVINO NNCF post-training quantization (<onnx stem>.int8.xml).",
    )
    int8_calibration_images: int = Field(
        32, ge=1, description="Prepared train images (letterboxed) the INT8 calibration runs on."
    )
    int8_calibration_method: Literal["minmax", "entropy", "percentile"] = Field(
        "percentile", description="How ONNX Runtime INT8 calibrates activation ranges (onnxruntime "
        "CalibrationMethod): percentile (99.999th) loses less AP than minmax on coco128 "
        "(yolox/export/quantize.py has the figures); minmax calibrates ~3x faster.",
    )
    int8_keep_float: list[str] = Field(
        default_factory=lambda: ["backbone.backbone.stem", "backbone.backbone.dark2"],
        description="Modules left in float in the INT8 model (dotted names, as train.freeze): the stem sees the "
        "0-255 image and 8-bit activations there cost most of the AP (yolox/export/quantize.py has the figures).",
    )
    openvino_int8_keep_float: list[str] = Field(
        default_factory=list,
        description="Modules left in float in the OpenVINO INT8 IR (as int8_keep_float; the head's outputs and all "
        "after them stay float always): none by default, NNCF's calibration holds the AP with the stem quantized "
        "too, and it runs faster (yolox/export/openvino.py has the figures).",
    )
    tensorrt_precision: Literal["fp16", "int8"] = Field(
        "fp16", description="TensorRT engine precision; int8 calibrates (entropy) on the same prepared images."
    )
    tensorrt_max_batch: int = Field(8, ge=1, description="Largest batch of the TensorRT optimisation profile.")
    tensorrt_sizes: tuple[int, int] | None = Field(
        None, description="(min, max) input side of the TensorRT profile for a dynamic-H/W graph (pixels, "
        "multiples of 32); null: the model's input size only.",
    )

    @field_validator("formats")
    @classmethod
    def _formats(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"lists a format twice: {value}")
        return value

    @field_validator("tensorrt_sizes")
    @classmethod
    def _tensorrt_sizes(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None:
            lo, hi = value
            if not (_SIZE_STEP <= lo <= hi <= MAX_INPUT_SIZE) or lo % _SIZE_STEP or hi % _SIZE_STEP:
                raise ValueError(f"must be (min, max) multiples of {_SIZE_STEP} with {_SIZE_STEP} <= min <= max <= "
                                 f"{MAX_INPUT_SIZE}, got ({lo}, {hi})")
        return value
    tensorrt_timing_cache: str = Field(
        "models/tensorrt.timing-cache", description="TensorRT timing cache, reused across builds on one GPU type."
    )
    benchmark_warmup: int = Field(3, ge=0, description="yolox benchmark / latency rule: untimed runs first.")
    benchmark_repeats: int = Field(
        30, ge=1, description="yolox benchmark / latency rule: timed batch-1 runs (latency percentiles)."
    )
    benchmark_batch: int = Field(8, ge=1, description="yolox benchmark: batch size of the throughput figure.")


class TrackingParams(_Params):
    """MLflow tracking and registry. The URI itself comes from MLFLOW_TRACKING_URI, never from params."""

    experiment: str = "yolox"
    registered_model: str = Field("yolox-coco128", min_length=1)
    run_name: str | None = Field(None, description="The MLflow run's name. Default: '<model without yolox-> "
                                 "<data version[:8]> <UTC start MMDD-HHMM>', e.g. 'nano 1a2b3c4d 1207-0612'.")
    runs_dir: str = Field(
        "runs/pipeline", min_length=1, description="Each pipeline run writes everything it makes into its own folder "
        "here, <UTC time>-<8 hex> (the MLflow run's tag run_dir): a snapshot of its prepared data, checkpoints, "
        "metrics, exports. Two runs in one project never share a file."
    )
    preflight_timeout_s: float = Field(
        5.0, gt=0, description="How long the check before any work waits for the tracking server or registry (s)."
    )
    request_timeout_s: float = Field(
        5.0, gt=0, description="Timeout of one request of the training metrics journal to MLflow, no retries (s): a "
        "slower or dead server leaves the metrics in the journal and training goes on."
    )
    flush_timeout_s: float = Field(
        30.0, ge=0, description="How long the end of training waits for the journal's pending metrics to reach "
        "MLflow before leaving them for `yolox tracking flush` (s)."
    )
    http_timeout_s: int = Field(
        10, ge=1, le=600, description="Connect and read timeout of every other MLflow HTTP request, per attempt "
        "(whole seconds, as MLFLOW_HTTP_REQUEST_TIMEOUT, which wins when set): with the 2 retries "
        "(yolox.tracking.store.bound_requests) a call to a server that stopped answering fails after about 3x this."
    )


class GateParams(_Params):
    """Promotion gate: when a candidate may take the champion alias."""

    min_ap: float = Field(0.05, ge=0.0, le=1.0, description="Absolute AP50:95 floor (fraction).")
    max_regression: float = Field(
        0.005, ge=0.0, le=1.0, description="Largest allowed AP50:95 drop below the champion (fraction)."
    )
    require_export_check: bool = True
    best_ever: bool = Field(
        True, description="Also reject a candidate more than max_regression below the best AP50:95 any champion "
        "reached on the same val set (recorded in the registry), so repeated small losses cannot add up."
    )
    base_check: bool = Field(
        True, description="With no champion yet, reject a candidate more than max_regression below the weights it "
        "started from (model.weights), evaluated on the same val set in the same run (when they predict the "
        "same classes)."
    )
    per_class_min_boxes: int | None = Field(
        None, ge=1, description="Per-class rule: classes with at least this many val boxes may lose at most "
        "per_class_max_drop AP50:95 against the champion (or the base weights); null = off."
    )
    per_class_max_drop: float = Field(0.05, ge=0.0, le=1.0, description="See per_class_min_boxes (fraction).")
    int8_max_drop: float = Field(
        0.01, ge=0.0, le=1.0, description="INT8 rules (an ONNX Runtime or OpenVINO INT8 model, export.int8 and "
        "export.formats; an INT8 TensorRT engine, export.tensorrt_precision): its AP50:95 may be at most this far "
        "below the FP32 model's, both on the "
        "gate's val set (figures from another val set are measured again in the gate run) (fraction).",
    )
    max_p90_ms: float | None = Field(
        None, gt=0.0, description="Latency rule: the candidate's p90 latency per image at batch 1 (ONNX Runtime, "
        "letterbox to detections, on this machine, measured in the gate run) must not exceed this (ms); "
        "null = off.",
    )
    golden: str | None = Field(
        None, description="A fixed regression set (any dataset the readers take: a folder, dataset.yaml, COCO json, "
        "VOC folder; all its images), evaluated for the candidate and the champion in every gate run beside the val "
        "split: unlike the val split, it is the same images night after night. null: no such rule.",
    )
    golden_max_regression: float = Field(
        0.0, ge=0.0, le=1.0, description="golden rule: the candidate's AP50:95 on the golden set may be at most this "
        "far below the champion's (fraction); 0: the production model never gets worse on it.",
    )
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"


class PipelineParams(_Params):
    """All params of one pipeline run (one YAML file under params/)."""

    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    augment: AugmentParams = AugmentParams()
    train: TrainParams = TrainParams()
    eval: EvalParams = EvalParams()
    export: ExportParams = ExportParams()
    serve: ServeParams = ServeParams()
    tracking: TrackingParams = TrackingParams()
    gate: GateParams = GateParams()
    predict: PredictParams = PredictParams()

    def flat(self) -> dict[str, Any]:
        """The params flattened with dotted names, e.g. ``{"train.epochs": 300, ...}`` (for MLflow)."""
        return flatten(self.model_dump(mode="json"))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts into ``{"a.b.c": value}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid params"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key" if len(e["loc"]) > 1 else \
                f"unknown section (sections: {', '.join(PipelineParams.model_fields)})"
        elif e["type"] == "literal_error" and "expected" in (e.get("ctx") or {}):
            msg = f"must be one of {e['ctx']['expected']}"
        got = e.get("input")
        got_s = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {loc}: {msg}{got_s}")
    return "\n".join(lines)


def parse_params(raw: dict[str, Any] | None, source: str = "params") -> PipelineParams:
    """Validate a params tree.

    Raises:
        ConfigError: on unknown keys or bad values; the message lists every bad field by its dotted path.
    """
    try:
        return PipelineParams.model_validate(raw or {})
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


MAX_PARAMS_BYTES = 2**20
"""Largest params file read (bytes; 1 MiB)."""


def load_params(path: str | Path, overrides: list[str] | None = None) -> PipelineParams:
    """Load and validate a params YAML file, with optional ``key.path=value`` overrides (YAML values). An
    override of ``train.epochs`` lowers the phases longer than the run (:func:`fit_phases`; a warning of the
    ``yolox.config`` logger names them).

    Raises:
        ConfigError: the file is missing or not YAML, or a value is invalid (names file and field);
            overrides that contradict each other (:func:`fit_phases`).
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"params file {path} is a folder: pass a YAML file, e.g. params/default.yaml")
    problem = regular_file_problem(path, MAX_PARAMS_BYTES)
    if problem == "not found":
        raise ConfigError(f"params file not found: {path}")
    if problem is not None:       # a FIFO or device would block the read; a huge file is not params
        raise ConfigError(f"params file {path}: {problem}: pass a params YAML file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (not UTF-8): pass a params YAML file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(err)}") from None
    if raw is None:
        raise ConfigError(f"{path}: the params file is empty: give the sections to override (data, model, "
                          "train, ...), or drop --params to use the defaults")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, model, train, ...), got {type(raw).__name__}")
    for item in overrides or []:
        apply_override(raw, item)
    _note(fit_phases(raw, overrides, str(path)))
    return parse_params(raw, str(path))


def _yaml_problem(err: yaml.YAMLError) -> str:
    """'expected ... (line 2, column 1)' from a PyYAML error (without its multi-line source excerpt)."""
    mark = getattr(err, "problem_mark", None)
    parts = [p for p in (getattr(err, "context", None), getattr(err, "problem", None)) if p]
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return (", ".join(parts) or " ".join(str(err).split())) + where


def params_from(path: str | Path | None, overrides: list[str] | None = None) -> PipelineParams:
    """:func:`load_params` of ``path``, or, without a file, the defaults with ``overrides`` applied
    (``yolox train --set train.epochs=3`` works without ``--params``: the default phases lowered to 3 epochs).

    Raises:
        ConfigError: see :func:`load_params`.
    """
    if path is not None:
        return load_params(path, overrides)
    raw: dict[str, Any] = {}
    for item in overrides or []:
        apply_override(raw, item)
    _note(fit_phases(raw, overrides, "the defaults"))
    return parse_params(raw, "--set")


def _note(note: str | None) -> None:
    if note:
        logging.getLogger("yolox.config").warning("%s", note)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one ``section.key=value`` override (value parsed as YAML) to a raw params tree in place.

    Raises:
        ConfigError: the override is not of the form ``a.b=value``.
    """
    if "=" not in item or not item.split("=", 1)[0].strip():
        raise ConfigError(f"override {item!r}: expected KEY.PATH=VALUE, e.g. train.epochs=5")
    key, value = item.split("=", 1)
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part} is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {item!r}: the value is not valid YAML ({_yaml_problem(err)}); quote it, "
                          "e.g. --set 'train.freeze=[backbone.backbone.stem]'") from None


_Section = TypeVar("_Section", bound=_Params)


def with_options(section: _Section, values: Mapping[str, tuple[str, Any]]) -> _Section:
    """A validated copy of a params section with fields set from command-line options.

    Args:
        section: e.g. ``params.serve``.
        values: field name -> (option name, value), e.g. ``{"conf_thresh": ("--conf", 0.5)}``; a value of None
            keeps the section's own.

    Raises:
        ConfigError: a value the field does not allow, naming the option, the value, the allowed range and the
            field, e.g. ``--conf 1.5: must be in [0, 1] (serve.conf_thresh)``.
    """
    out = section.model_copy()
    for name, (option, value) in values.items():
        if value is None:
            continue
        try:
            setattr(out, name, value)
        except ValidationError as err:
            raise ConfigError(f"{option} {value}: {_allowed(type(section), name, err)} "
                              f"({_section_name(type(section))}.{name})") from None
    return out


def _allowed(cls: type[_Params], name: str, err: ValidationError) -> str:
    """'must be in [0, 1]' from the field's bounds (for a number out of them, or not finite), else pydantic's own
    message."""
    first = err.errors()[0]
    if first["type"] not in {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"}:
        return first["msg"]
    meta = cls.model_fields[name].metadata
    lo = next((f"[{m.ge:g}" if isinstance(m, annotated_types.Ge) else f"({m.gt:g}" for m in meta
               if isinstance(m, annotated_types.Ge | annotated_types.Gt)), "")
    hi = next((f"{m.le:g}]" if isinstance(m, annotated_types.Le) else f"{m.lt:g})" for m in meta
               if isinstance(m, annotated_types.Le | annotated_types.Lt)), "")
    if first["type"] == "finite_number":
        return f"must be a finite number in {lo}, {hi}" if lo and hi else "must be a finite number"
    return f"must be in {lo}, {hi}" if lo and hi else first["msg"].replace("Input should be", "must be")


def _section_name(cls: type[_Params]) -> str:
    return next((k for k, f in PipelineParams.model_fields.items() if f.annotation is cls), cls.__name__)
