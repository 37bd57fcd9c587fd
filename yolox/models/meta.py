"""Model facts that travel with the weights: one :class:`ModelMeta`, written once, read back everywhere.

A checkpoint written by :func:`yolox.train.trainer.train` carries it under ``"meta"``; an exported ONNX model
carries it in its ``metadata_props`` (one JSON value under :data:`ONNX_KEY`, plus the flat keys older readers
and other tools look for: ``names``, ``input_size``, ``model_name``, ``strides``). Eval, export, predict and
serving read it back with :func:`meta_of_checkpoint` / :func:`meta_of_onnx` instead of re-deriving any fact.

The one input-size rule (:func:`input_size`): an explicit size (a ``--img-size`` flag, ``eval.img_size``)
wins, else the model's own ``input_size``, i.e. the size it was trained at (for the authors' release files,
the variant's size in :data:`yolox.models.table.MODELS`).
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from yolox.errors import CheckpointError, ConfigError
from yolox.models.coco_classes import COCO_CLASSES
from yolox.models.table import STRIDES, model_spec

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

MAX_INPUT_SIZE = 8192
"""The largest input side (pixels) a model, a flag or a file's metadata may give: one letterboxed 8192 px image
is 805 MB of float32 already."""

MAX_CLASSES = 100_000
"""Most class names a model's metadata may list."""

MAX_DETECTIONS = 100_000
"""Largest ``max_det`` (detections per image) an exported model's metadata may bake in."""


@dataclass(frozen=True)
class ExportFormat:
    """What an exported graph is: its :data:`Variant`, numeric ``precision`` (``fp32`` or ``int8``: static QDQ
    quantization), the thresholds baked into an ``end2end`` graph (score >= ``conf_thresh`` in [0, 1],
    class-aware NMS IoU ``nms_thresh`` in (0, 1], at most ``max_det`` >= 1 per image; None for the others),
    whether the input height and width are dynamic (multiples of :data:`SIZE_MULTIPLE`), and its output names in
    order. Raises ConfigError for a value out of range (an exporter never bakes one into a graph)."""

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
        for name, value, lo_open in (("conf_thresh", self.conf_thresh, False), ("nms_thresh", self.nms_thresh, True)):
            if value is not None and not (math.isfinite(value) and (value > 0 if lo_open else value >= 0) and value <= 1):
                raise ConfigError(f"export {name} {value}: must be in {'(0' if lo_open else '[0'}, 1]")
        if self.max_det is not None and not 1 <= self.max_det <= MAX_DETECTIONS:
            raise ConfigError(f"export max_det {self.max_det}: must be in [1, {MAX_DETECTIONS}]")
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
    def from_dict(cls, raw: Any, source: str = "model meta") -> ModelMeta:
        """Inverse of :meth:`to_dict`, validated like user input (the dict comes from a file): ``name`` a
        non-empty string; ``input_size`` an integer, a positive multiple of the largest stride, at most
        :data:`MAX_INPUT_SIZE` (pixels); ``names`` a non-empty list of strings (at most :data:`MAX_CLASSES`);
        ``strides`` (optional) as many increasing positive integers as :data:`STRIDES`; ``preprocessing`` and
        ``export`` (optional) objects of their known fields, the baked thresholds in range (:func:`_export_of`).

        Raises:
            CheckpointError: one line naming ``source`` (the file and where in it), the bad or missing field and
                what is allowed.
        """
        def bad(problem: str) -> CheckpointError:
            return CheckpointError(f"{source}: {problem}")

        if not isinstance(raw, Mapping):
            raise bad(f"expected an object of model facts (name, input_size, names, ...), got {_kind(raw)}")
        missing = [k for k in ("name", "input_size", "names") if k not in raw]
        if missing:
            raise bad(f"missing {', '.join(repr(k) for k in missing)} (required: 'name', 'input_size', 'names')")
        unknown = sorted(set(map(str, raw)) - {f.name for f in fields(cls)})
        if unknown:
            raise bad(f"unknown field {', '.join(repr(k) for k in unknown)}")
        name = raw["name"]
        if not isinstance(name, str) or not name.strip():
            raise bad(f"'name' must be a non-empty string (got {_shown(name)})")
        strides = _strides(raw.get("strides", STRIDES), bad)
        size = _integer(raw["input_size"], "'input_size'", bad)
        try:
            check_input_size(size, strides, "'input_size'")
        except ConfigError as err:
            raise bad(str(err)) from None
        names = _names(raw["names"], "'names'", bad)
        pre = _preprocessing(raw.get("preprocessing"), bad)
        exp = _export_of(raw.get("export"), bad)
        return cls(name, size, names, strides, pre, exp)

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
    variant: the P5 grid must tile the square input) and at most :data:`MAX_INPUT_SIZE`, else ConfigError naming
    ``name`` (e.g. ``--img-size``), the value and the nearest allowed sizes."""
    stride = max(strides)
    if size < stride or size % stride:
        lower = max(stride, size // stride * stride)
        hint = f"{lower}" if size < stride else f"{lower} or {lower + stride}"
        raise ConfigError(f"{name} {size}: must be a positive multiple of {stride} (the model's largest stride), "
                          f"e.g. {hint}")
    if size > MAX_INPUT_SIZE:
        raise ConfigError(f"{name} {size}: must be at most {MAX_INPUT_SIZE} pixels")
    return size


def meta_for(name: str, names: Sequence[str], size: int | None = None) -> ModelMeta:
    """The meta of variant ``name`` trained on ``names`` at ``size`` (default: the variant's own size)."""
    return ModelMeta(name, int(size or model_spec(name).input_size), tuple(names))


def meta_of_checkpoint(state: Mapping[str, Any], model_name: str | None = None,
                       source: str = "checkpoint") -> ModelMeta:
    """The meta of a loaded checkpoint dict (``source``: the file, named in errors).

    - this project's checkpoints: their ``"meta"`` (or, for checkpoints written before it existed, their
      ``model_name``, ``input_size`` and ``names`` keys), validated (:meth:`ModelMeta.from_dict`);
    - the authors' release files (``{"model": state_dict}``): ``model_name`` must be given; the class count is
      read from the class predictor (80 -> the COCO names), the size is the variant's.

    Raises:
        ConfigError: an authors' checkpoint without ``model_name``. CheckpointError: a bad meta (one line naming
            ``source`` and the field).
    """
    if "meta" in state:
        return ModelMeta.from_dict(state["meta"], f"{source}: 'meta'")
    if "model_name" in state and "names" in state:
        name = state["model_name"]
        if not isinstance(name, str) or not name.strip():
            raise CheckpointError(f"{source}: 'model_name' must be a non-empty string (got {_shown(name)})")
        return ModelMeta.from_dict({"name": name, "input_size": state.get("input_size") or _variant_size(name),
                                    "names": state["names"]}, source)
    if model_name is None:
        raise ConfigError("this checkpoint does not say which model it is: pass --model (e.g. yolox-nano)")
    weights = state.get("model", state)
    cls = weights.get("head.cls_preds.0.weight") if isinstance(weights, Mapping) else None
    nc = int(cls.shape[0]) if cls is not None else 80
    return meta_for(model_name, default_names(nc))


def meta_of_onnx(props: Mapping[str, str], fallback_name: str | None = None,
                 source: str = "ONNX metadata") -> ModelMeta | None:
    """The meta in an ONNX model's ``metadata_props`` (as a dict), or None when it has none (e.g. the
    authors' released ONNX): callers then fall back to the variant table. The ``yolox.models.meta`` JSON when present
    (:meth:`ModelMeta.from_dict`), else the flat keys ``names`` (a JSON list of strings), ``input_size`` (an
    integer, pixels; default 416), ``strides`` (a JSON list) and ``model_name`` (or ``fallback_name``).
    ``source`` names the file in errors.

    Raises:
        CheckpointError: one line naming ``source``, the metadata key and what is wrong with its value (not JSON,
            the wrong type or shape, out of range, missing).
    """
    if ONNX_KEY in props:
        where = f"{source}: metadata {ONNX_KEY!r}"
        return ModelMeta.from_dict(_json_value(props[ONNX_KEY], where), where)
    if "names" in props and ("model_name" in props or fallback_name):
        raw = {"name": props.get("model_name") or str(fallback_name),
               "input_size": _integer(props.get("input_size") or "416", "'input_size'",
                                      lambda p: CheckpointError(f"{source}: metadata {p}")),
               "names": _json_value(props["names"], f"{source}: metadata 'names'")}
        if props.get("strides"):
            raw["strides"] = _json_value(props["strides"], f"{source}: metadata 'strides'")
        return ModelMeta.from_dict(raw, f"{source}: metadata")
    return None


def _json_value(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        msg = f"{err.msg} at character {err.pos}" if isinstance(err, json.JSONDecodeError) else "nested too deep"
        raise CheckpointError(f"{where} is not JSON ({msg}): {_shown(text)}") from None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _integer(value: Any, what: str, bad: Callable[[str], CheckpointError]) -> int:
    """``value`` as an int: an integer (not a bool, not a float) or a string of decimal digits."""
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise bad(f"{what} must be an integer (got {_shown(value)})")
    return int(value)


def _names(value: Any, what: str, bad: Callable[[str], CheckpointError]) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise bad(f"{what} must be a non-empty list of class names (got {_shown(value)})")
    if len(value) > MAX_CLASSES:
        raise bad(f"{what} holds {len(value)} class names, more than {MAX_CLASSES}")
    odd = next((i for i, n in enumerate(value) if not isinstance(n, str) or not n.strip()), None)
    if odd is not None:
        raise bad(f"{what} must be a list of non-empty strings: item {odd} is {_shown(value[odd])}")
    return tuple(value)


def _strides(value: Any, bad: Callable[[str], CheckpointError]) -> tuple[int, ...]:
    want = f"a list of {len(STRIDES)} increasing positive integers, e.g. {list(STRIDES)}"
    if not isinstance(value, list | tuple) or len(value) != len(STRIDES) \
            or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in value) \
            or any(a >= b for a, b in itertools.pairwise(value)) or max(value) > MAX_INPUT_SIZE:
        raise bad(f"'strides' must be {want} (got {_shown(value)})")
    return tuple(int(s) for s in value)


_PREPROCESSING_TYPES: dict[str, type] = {"channel_order": str, "pixel_range": str, "normalise": bool,
                                         "letterbox": str, "pad_value": int}


def _preprocessing(value: Any, bad: Callable[[str], CheckpointError]) -> Preprocessing:
    if value is None:
        return Preprocessing()
    if not isinstance(value, Mapping):
        raise bad(f"'preprocessing' must be an object (got {_shown(value)})")
    for key, v in value.items():
        kind = _PREPROCESSING_TYPES.get(key)
        if kind is None:
            raise bad(f"'preprocessing' has an unknown field {key!r} (known: {', '.join(_PREPROCESSING_TYPES)})")
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            raise bad(f"'preprocessing.{key}' must be {_kind(kind())} (got {_shown(v)})")
    if not 0 <= value.get("pad_value", 114) <= 255:
        raise bad(f"'preprocessing.pad_value' must be in [0, 255] (got {value['pad_value']})")
    return Preprocessing(**value)


def _export_of(value: Any, bad: Callable[[str], CheckpointError]) -> ExportFormat | None:
    """The ``export`` facts of an exported model: ``variant`` one of :data:`VARIANTS`, ``precision`` fp32 or
    int8, ``dynamic_hw`` a boolean, ``outputs`` a non-empty list of strings; an ``end2end`` graph's baked
    ``conf_thresh`` in [0, 1], ``nms_thresh`` in (0, 1] and ``max_det`` an integer >= 1 (all three required)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise bad(f"'export' must be an object (got {_shown(value)})")
    known = {f.name for f in fields(ExportFormat)}
    unknown = sorted(set(map(str, value)) - known)
    if unknown:
        raise bad(f"'export' has an unknown field {', '.join(repr(k) for k in unknown)} (known: "
                  f"{', '.join(sorted(known))})")
    variant = value.get("variant", "raw")
    if variant not in VARIANTS:
        raise bad(f"'export.variant' must be one of {', '.join(VARIANTS)} (got {_shown(variant)})")
    if value.get("precision", "fp32") not in ("fp32", "int8"):
        raise bad(f"'export.precision' must be fp32 or int8 (got {_shown(value['precision'])})")
    if not isinstance(value.get("dynamic_hw", False), bool):
        raise bad(f"'export.dynamic_hw' must be true or false (got {_shown(value['dynamic_hw'])})")
    outputs = value.get("outputs", ("output",))
    if not isinstance(outputs, list | tuple) or not outputs or not all(isinstance(o, str) for o in outputs):
        raise bad(f"'export.outputs' must be a non-empty list of output names (got {_shown(outputs)})")
    baked: dict[str, Any] = {}
    for key, lo, lo_open in (("conf_thresh", 0.0, False), ("nms_thresh", 0.0, True)):
        v = value.get(key)
        if v is None and variant != "end2end":
            continue
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) \
                or (v <= lo if lo_open else v < lo) or v > 1:
            rng = "(0, 1]" if lo_open else "[0, 1]"
            got = "missing" if v is None else f"got {_shown(v)}"
            raise bad(f"'export.{key}' must be a number in {rng} ({got})")
        baked[key] = float(v)
    v = value.get("max_det")
    if v is not None or variant == "end2end":
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 1 <= v <= MAX_DETECTIONS:
            got = "missing" if v is None else f"got {_shown(v)}"
            raise bad(f"'export.max_det' must be an integer in [1, {MAX_DETECTIONS}] ({got})")
        baked["max_det"] = int(v)
    return ExportFormat(variant, value.get("precision", "fp32"), baked.get("conf_thresh"), baked.get("nms_thresh"),
                        baked.get("max_det"), value.get("dynamic_hw", False), tuple(outputs))


def default_names(num_classes: int) -> tuple[str, ...]:
    """The COCO names for 80 classes, else ``class_0 ... class_{n-1}``."""
    return tuple(COCO_CLASSES) if num_classes == 80 else tuple(f"class_{i}" for i in range(num_classes))


def _variant_size(name: str) -> int:
    return model_spec(name).input_size
