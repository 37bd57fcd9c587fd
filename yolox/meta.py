"""Model facts that travel with the weights: one :class:`ModelMeta`, written once, read back everywhere.

A checkpoint written by :func:`yolox.train.trainer.train` carries it under ``"meta"``; an exported ONNX model
carries it in its ``metadata_props`` (one JSON value under :data:`ONNX_KEY`, plus the flat keys older readers
and other tools look for: ``names``, ``input_size``, ``model_name``, ``strides``). Eval, export, predict and
serving read it back with :func:`meta_of_checkpoint` / :func:`meta_of_onnx` instead of re-deriving any fact.

The one input-size rule (:func:`input_size`): an explicit size (a ``--img-size`` flag, ``eval.img_size``)
wins, else the model's own ``input_size``, i.e. the size it was trained at (for the authors' release files,
the variant's size in :data:`yolox.models.VARIANTS`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from yolox.errors import CheckpointError, ConfigError

STRIDES: tuple[int, ...] = (8, 16, 32)
"""Strides (pixels) of the three output levels P3, P4, P5 of every YOLOX variant (REFERENCE.md)."""

ONNX_KEY = "yolox.meta"
"""The ONNX ``metadata_props`` key holding :meth:`ModelMeta.to_json`."""

Variant = Literal["raw", "decoded", "end2end"]
"""How an exported graph ends (:class:`ExportFormat`):

- ``raw``: ``output`` (B, A, 5 + C) ``[x, y, log w, log h]`` grid offsets, sigmoid(obj), sigmoid(cls): the
  authors' layout; the consumer decodes and runs NMS.
- ``decoded``: ``boxes`` (B, A, 4) float32 xyxy input pixels and ``scores`` (B, A, C) float32 = obj * cls; the
  consumer takes the best class per box and runs class-aware NMS.
- ``end2end``: decode + class-aware NMS in the graph (ONNX ``NonMaxSuppression``): ``num_dets`` (B, 1) int64,
  ``boxes`` (B, K, 4) float32 xyxy input pixels, ``scores`` (B, K) float32, ``labels`` (B, K) int64, K =
  ``max_det``, sorted by descending score, rows past ``num_dets`` zero (labels -1); thresholds baked in.
"""
VARIANTS: tuple[str, ...] = get_args(Variant)

SIZE_MULTIPLE = max(STRIDES)
"""Input sides must be multiples of this: the largest stride (:func:`check_input_size`)."""


@dataclass(frozen=True)
class ExportFormat:
    """What an exported graph is: its :data:`Variant`, numeric ``precision`` (``fp32`` or ``int8``: static QDQ
    quantization), the thresholds baked into an ``end2end`` graph (score >= ``conf_thresh``, class-aware NMS
    IoU ``nms_thresh``, at most ``max_det`` per image; None for the others), whether the input height and
    width are dynamic (multiples of :data:`SIZE_MULTIPLE`), and its output names in order."""

    variant: str = "raw"
    precision: str = "fp32"
    conf_thresh: float | None = None
    nms_thresh: float | None = None
    max_det: int | None = None
    dynamic_hw: bool = False
    outputs: tuple[str, ...] = ("output",)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"export variant {self.variant!r}: must be one of {list(VARIANTS)}")
        if self.precision not in ("fp32", "int8"):
            raise ConfigError(f"export precision {self.precision!r}: must be fp32 or int8")
        object.__setattr__(self, "outputs", tuple(str(o) for o in self.outputs))


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the network input (REFERENCE.md, "Inference preprocessing"): BGR channel order,
    pixel values 0-255 without normalisation, letterbox at the top-left corner (scale ``r = min(S / h, S / w)``,
    bilinear resize), padding value 114."""

    channel_order: str = "BGR"
    pixel_range: str = "0-255"
    normalise: bool = False
    letterbox: str = "top-left"
    pad_value: int = 114


@dataclass(frozen=True)
class ModelMeta:
    """What a set of weights is: variant ``name`` (e.g. ``"yolox-nano"``), square ``input_size`` (pixels)
    it was trained at, class ``names`` (index order of the class predictor), ``strides`` (pixels) and
    ``preprocessing``."""

    name: str
    input_size: int
    names: tuple[str, ...]
    strides: tuple[int, ...] = STRIDES
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    export: ExportFormat | None = None
    """Set on exported models only (checkpoints carry None, and store no ``export`` key)."""

    def __post_init__(self) -> None:
        if not self.names:
            raise ConfigError("model meta: the class names are empty")
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "strides", tuple(int(s) for s in self.strides))
        check_input_size(self.input_size, self.strides, "model input size")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def variant(self) -> str:
        """The exported graph's :data:`Variant` (``raw`` for a checkpoint or a model exported before variants)."""
        return self.export.variant if self.export is not None else "raw"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists, not tuples): what checkpoints store under ``"meta"`` (no ``export`` key
        unless set)."""
        d = asdict(self)
        d["names"], d["strides"] = list(self.names), list(self.strides)
        if self.export is None:
            del d["export"]
        else:
            d["export"]["outputs"] = list(self.export.outputs)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ModelMeta:
        """Inverse of :meth:`to_dict`. Raises CheckpointError naming the missing or bad field."""
        try:
            pre = raw.get("preprocessing") or {}
            exp = raw.get("export")
            return cls(str(raw["name"]), int(raw["input_size"]), tuple(raw["names"]),
                       tuple(raw.get("strides") or STRIDES), Preprocessing(**pre),
                       ExportFormat(**exp) if exp else None)
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"model meta is incomplete or invalid ({type(err).__name__}: {err})") from None

    def onnx_props(self) -> dict[str, str]:
        """``metadata_props`` of an exported model: the whole meta as JSON, plus flat keys any ONNX consumer can
        read without this package: ``model_name``, ``input_size``, ``names`` (JSON list), ``strides`` (JSON),
        ``layout`` (one line), the preprocessing facts ``channel_order``, ``pixel_range``, ``normalise``,
        ``letterbox``, ``pad_value``, ``size_multiple``, ``resize`` (the scale rule), and, for an exported model, ``variant``,
        ``precision``, ``outputs`` (JSON list), ``dynamic_hw`` and the baked thresholds ``conf_thresh``,
        ``nms_thresh``, ``max_det`` (end2end only)."""
        pre = self.preprocessing
        props = {ONNX_KEY: self.to_json(), "model_name": self.name, "input_size": str(self.input_size),
                 "names": json.dumps(list(self.names)), "strides": json.dumps(list(self.strides)),
                 "layout": f"{pre.channel_order} {pre.pixel_range} letterbox {pre.letterbox} pad {pre.pad_value}",
                 "channel_order": pre.channel_order, "pixel_range": pre.pixel_range,
                 "normalise": json.dumps(pre.normalise), "letterbox": pre.letterbox,
                 "pad_value": str(pre.pad_value), "size_multiple": str(SIZE_MULTIPLE),
                 "resize": "r = min(H_in / h, W_in / w); cv2.resize to (int(w * r), int(h * r)), INTER_LINEAR; "
                           "boxes / r = original pixels"}
        if self.export is not None:
            e = self.export
            props.update({"variant": e.variant, "precision": e.precision, "outputs": json.dumps(list(e.outputs)),
                          "dynamic_hw": json.dumps(e.dynamic_hw)})
            props.update({k: str(v) for k, v in (("conf_thresh", e.conf_thresh), ("nms_thresh", e.nms_thresh),
                                                  ("max_det", e.max_det)) if v is not None})
        return props


def input_size(meta: ModelMeta, override: int | None = None, name: str = "input size") -> int:
    """THE input-size rule: ``override`` (an explicit flag or ``eval.img_size``) when given, else the size the
    model was trained at. Raises ConfigError (naming ``name``) for a size that is not a positive multiple of
    the model's largest stride (:func:`check_input_size`)."""
    size = meta.input_size if override is None else int(override)
    return check_input_size(size, meta.strides, name)


def check_input_size(size: int, strides: Sequence[int] = STRIDES, name: str = "input size") -> int:
    """``size`` (pixels) when it is a positive multiple of the largest of ``strides`` (32 for every YOLOX
    variant: the P5 grid must tile the square input), else ConfigError naming ``name`` (e.g. ``--img-size``),
    the value and the nearest allowed sizes."""
    stride = max(strides)
    if size < stride or size % stride:
        lower = max(stride, size // stride * stride)
        hint = f"{lower}" if size < stride else f"{lower} or {lower + stride}"
        raise ConfigError(f"{name} {size}: must be a positive multiple of {stride} (the model's largest stride), "
                          f"e.g. {hint}")
    return size


def meta_for(name: str, names: Sequence[str], size: int | None = None) -> ModelMeta:
    """The meta of variant ``name`` trained on ``names`` at ``size`` (default: the variant's own size)."""
    from yolox.models import get_variant

    return ModelMeta(name, int(size or get_variant(name).input_size), tuple(names))


def meta_of_checkpoint(state: Mapping[str, Any], model_name: str | None = None) -> ModelMeta:
    """The meta of a loaded checkpoint dict.

    - this project's checkpoints: their ``"meta"`` (or, for checkpoints written before it existed, their
      ``model_name``, ``input_size`` and ``names`` keys);
    - the authors' release files (``{"model": state_dict}``): ``model_name`` must be given; the class count is
      read from the class predictor (80 -> the COCO names), the size is the variant's.

    Raises:
        ConfigError: an authors' checkpoint without ``model_name``. CheckpointError: a bad meta.
    """
    if isinstance(state.get("meta"), Mapping):
        return ModelMeta.from_dict(state["meta"])
    if "model_name" in state and "names" in state:
        return ModelMeta(str(state["model_name"]), int(state.get("input_size") or 0) or
                         _variant_size(str(state["model_name"])), tuple(state["names"]))
    if model_name is None:
        raise ConfigError("this checkpoint does not say which model it is: pass --model (e.g. yolox-nano)")
    weights = state.get("model", state)
    cls = weights.get("head.cls_preds.0.weight") if isinstance(weights, Mapping) else None
    nc = int(cls.shape[0]) if cls is not None else 80
    return meta_for(model_name, default_names(nc))


def meta_of_onnx(props: Mapping[str, str], fallback_name: str | None = None) -> ModelMeta | None:
    """The meta in an ONNX model's ``metadata_props`` (as a dict), or None when it has none (e.g. the
    authors' released ONNX): callers then fall back to the variant table."""
    if ONNX_KEY in props:
        return ModelMeta.from_dict(json.loads(props[ONNX_KEY]))
    if "names" in props and ("model_name" in props or fallback_name):
        return ModelMeta(props.get("model_name") or str(fallback_name), int(props.get("input_size") or 416),
                         tuple(json.loads(props["names"])), tuple(json.loads(props.get("strides") or "[8, 16, 32]")))
    return None


def default_names(num_classes: int) -> tuple[str, ...]:
    """The COCO names for 80 classes, else ``class_0 ... class_{n-1}``."""
    from yolox.data.coco_classes import COCO_CLASSES

    return tuple(COCO_CLASSES) if num_classes == 80 else tuple(f"class_{i}" for i in range(num_classes))


def _variant_size(name: str) -> int:
    from yolox.models import get_variant

    return get_variant(name).input_size
