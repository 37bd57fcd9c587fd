"""The registered model: an MLflow pyfunc backed by the exported ONNX model (ONNX Runtime).

Input: a DataFrame with a string column ``image``: each row one image file, base64-encoded (JPEG/PNG).
Output: a DataFrame with one row per detection: ``image`` (row index of the input), ``x0, y0, x1, y1``
(float, original-image pixels, clipped to the image), ``score`` (float), ``class_id`` (int), ``class_name`` (str).
Detection runs through :func:`yolox.inference.detect`, the same path as ``yolox predict``, with the same
thresholds: score >= ``conf_thresh``, class-aware NMS IoU ``nms_thresh``, at most ``max_det`` per image
(:class:`yolox.config.ServeParams`: 0.25, 0.45, 100 unless the params say otherwise; ``yolox predict``'s too).
They are stored in the model (pickled with it, in its metadata and as the defaults of its signature's params)
and a request may override them, e.g. ``{"dataframe_split": ..., "params": {"conf_thresh": 0.5}}``.

**Which graph answers.** Artifacts: ``onnx``, the exported model (``export.variant``: raw, decoded or end2end),
and, when the export wrote one (``export.serve_end2end``), ``end2end``: the same network with decode and
class-aware NMS in the graph and the serving thresholds baked in (:data:`yolox.models.meta.Variant`). A request is
answered by an end2end graph (the ``end2end`` artifact, or ``onnx`` itself when it is end2end) whenever that
graph can give exactly the asked detections, i.e. when it asks for

- a score threshold >= the baked one (the graph's detections are filtered further: per-request ``conf_thresh``
  can always be raised),
- the baked NMS IoU (another IoU would need the predictions the graph's NMS already removed or kept),
- at most the baked number of detections (the first ``max_det`` are kept).

Any other request is answered by the raw (or decoded) ``onnx`` graph when the model has one: a documented
fallback, the same detections :func:`yolox.inference.detect` gives at those thresholds, at the cost of NMS in
Python. A model whose only graph is end2end (``export.variant: end2end`` without a raw one) answers such a
request with a 400 (``INVALID_PARAMETER_VALUE``) naming the baked thresholds and what may be asked.

**Budgets.** A request holds at most ``serve.max_rows`` rows, ``serve.max_request_bytes`` bytes of image files
(all rows, base64-decoded: counted from the base64 text's length, before decoding it) and, per image,
``serve.max_image_pixels`` pixels (width x height from the image header, read by Pillow without decoding the
pixels); all are checked before any image is decoded, and a request over one is answered **413** naming the limit
(:class:`RequestTooLarge`). The images are then decoded and run ``serve.batch_size`` at a time, so the pixels held
at once are bounded whatever the number of rows. MLflow's scoring server answers an ``MlflowException`` with
``e.get_http_status_code()``, which maps MLflow error codes to statuses (``mlflow.exceptions.
ERROR_CODE_TO_HTTP_STATUS``); no code maps to 413 (``REQUEST_LIMIT_EXCEEDED`` and ``RESOURCE_EXHAUSTED`` are 429,
"too many requests", which tells a client to retry), so :class:`RequestTooLarge` says 413 itself. The server
reads the whole body before the model sees it: bound it in front (a proxy's body-size limit) as well.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_EXHAUSTED
from PIL import Image, UnidentifiedImageError

from yolox.config import ServeParams, with_options
from yolox.errors import CheckpointError, ConfigError
from yolox.inference import OnnxBackend, detect
from yolox.models.meta import ONNX_KEY, meta_of_onnx
from yolox.serve.predict import opencv_reason

OUTPUT_COLUMNS = ["image", "x0", "y0", "x1", "y1", "score", "class_id", "class_name"]
OUTPUT_DTYPES = ["int64", "float64", "float64", "float64", "float64", "float64", "int64", "str"]
# The serving thresholds' defaults: yolox.config.ServeParams (also `yolox predict`'s); the pipeline passes
# the run's params.serve when it registers a model.
CONF_THRESH = ServeParams().conf_thresh
NMS_THRESH = ServeParams().nms_thresh
MAX_DET = ServeParams().max_det
BUDGETS = ("max_rows", "max_image_pixels", "max_request_bytes", "batch_size")
"""The :class:`ServeParams` a request is bounded by (module docstring), stored in the model like the thresholds."""


def encode_image(path: str | Path) -> str:
    """Base64 text of an image file, the pyfunc's input format."""
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def detections_frame(dets: list, names: list[str]) -> pd.DataFrame:
    """Detections of several images as the output DataFrame (columns :data:`OUTPUT_COLUMNS`)."""
    rows: list[dict[str, Any]] = []
    for i, det in enumerate(dets):
        for box, score, label in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist()):
            rows.append({"image": i, "x0": box[0], "y0": box[1], "x1": box[2], "y1": box[3],
                         "score": score, "class_id": int(label), "class_name": names[label]})
    return pd.DataFrame(rows, columns=OUTPUT_COLUMNS)


class YoloxOnnxModel(mlflow.pyfunc.PythonModel):
    """pyfunc over ``artifacts["onnx"]``; thresholds and request budgets fixed at logging time (defaults:
    :class:`ServeParams`').

    Raises:
        ConfigError: a threshold or budget :class:`ServeParams` does not allow (at construction).
    """

    def __init__(self, conf_thresh: float = CONF_THRESH, nms_thresh: float = NMS_THRESH,
                 max_det: int = MAX_DET, **budgets: int) -> None:
        unknown = sorted(set(budgets) - set(BUDGETS))
        if unknown:
            raise ConfigError(f"YoloxOnnxModel: unknown {', '.join(unknown)} (budgets: {', '.join(BUDGETS)})")
        serve = with_options(ServeParams(), {k: (k, v) for k, v in {"conf_thresh": conf_thresh,
                                                                   "nms_thresh": nms_thresh, "max_det": max_det,
                                                                   **budgets}.items()})
        self.conf_thresh = serve.conf_thresh
        self.nms_thresh = serve.nms_thresh
        self.max_det = serve.max_det
        for k in BUDGETS:
            setattr(self, k, getattr(serve, k))

    def thresholds(self) -> dict[str, Any]:
        """``{"conf_thresh", "nms_thresh", "max_det"}``: the signature's params and the model's metadata."""
        return {"conf_thresh": self.conf_thresh, "nms_thresh": self.nms_thresh, "max_det": self.max_det}

    def budgets(self) -> ServeParams:
        """The request budgets (:data:`BUDGETS`); a model pickled before they existed gets the defaults."""
        return ServeParams(**{k: getattr(self, k) for k in BUDGETS if hasattr(self, k)})

    def load_context(self, context: Any) -> None:
        """Open the ``onnx`` (and ``end2end``) artifacts with their metadata.

        Raises:
            CheckpointError: an artifact is not a loadable YOLOX model, or its metadata is malformed or missing
                (one line naming the file and the field)."""
        path = context.artifacts["onnx"]
        self.backend = OnnxBackend(path)
        """The ``onnx`` artifact's graph (what the gate evaluates and ``yolox benchmark`` times)."""
        end2end = context.artifacts.get("end2end")
        self.end2end = OnnxBackend(end2end) if end2end else self.backend if self.backend.variant == "end2end" \
            else None
        """The end2end graph requests are answered from when it can (module docstring), or None."""
        # a model exported before ModelMeta existed: its flat keys (names, input_size), validated as well
        meta = self.backend.meta or meta_of_onnx(self.backend.metadata, "unknown", source=str(path))
        if meta is None:
            raise CheckpointError(f"{path}: no model metadata ('{ONNX_KEY}' or 'names'): register a model exported "
                                  "by yolox export")
        self.names, self.input_size = list(meta.names), meta.input_size

    def serving_backend(self, p: dict[str, Any]) -> Any:
        """The graph that answers a request for thresholds ``p`` (module docstring: the end2end graph when it can
        give exactly those detections, else the raw/decoded one).

        Raises:
            MlflowException: INVALID_PARAMETER_VALUE when only an end2end graph is there and it cannot.
        """
        if self.end2end is None:
            return self.backend
        baked = self.end2end.meta.export
        if p["conf_thresh"] >= baked.conf_thresh - 1e-9 and abs(p["nms_thresh"] - baked.nms_thresh) <= 1e-9 \
                and p["max_det"] <= baked.max_det:
            return self.end2end
        if self.backend is not self.end2end:
            return self.backend
        raise bad_request(f"params: this model's graph has its thresholds baked in (conf_thresh {baked.conf_thresh:g}, "
                          f"nms_thresh {baked.nms_thresh:g}, max_det {baked.max_det}); asked for conf_thresh "
                          f"{p['conf_thresh']:g}, nms_thresh {p['nms_thresh']:g}, max_det {p['max_det']}: ask for "
                          f"conf_thresh >= {baked.conf_thresh:g}, nms_thresh {baked.nms_thresh:g} and max_det <= "
                          f"{baked.max_det}, or register a model exported with a raw graph (export.variant: raw)")

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Detections of every row's image (output frame: module docstring), by :meth:`serving_backend`, run
        ``serve.batch_size`` images at a time.

        Raises:
            RequestTooLarge: (HTTP 413) more rows, image bytes or pixels than the budgets (module docstring),
                checked before any image is decoded; the message names the limit and its param.
            MlflowException: ``INVALID_PARAMETER_VALUE`` (the scoring server answers 400 with its message, no
                traceback) for a malformed request: no ``image`` column, a row that is not a base64-encoded
                image file (the message names the row, 0-based as the output's ``image``), a bad param, or
                thresholds an end2end-only model cannot give.
        """
        budgets = self.budgets()
        files = image_files(model_input, budgets)
        p = request_thresholds(self.thresholds(), params)
        backend = self.serving_backend(p)
        dets: list = []
        for start in range(0, len(files), budgets.batch_size):
            images = [decode_image(start + i, data) for i, data in enumerate(files[start:start + budgets.batch_size])]
            dets += detect(backend, images, self.input_size, p["conf_thresh"], p["nms_thresh"], p["max_det"],
                           clip=True)
        return detections_frame(dets, self.names)


class RequestTooLarge(MlflowException):
    """A request over a serving budget: MLflow's scoring server answers it with HTTP 413 (Content Too Large),
    the JSON body ``{"error_code": "RESOURCE_EXHAUSTED", "message": ...}``.

    No MLflow error code maps to 413 (module docstring), so the status comes from :meth:`get_http_status_code`,
    which the scoring server asks of the exception it catches; the error code is the closest MLflow has."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=RESOURCE_EXHAUSTED)

    def get_http_status_code(self) -> int:
        return 413


def bad_request(message: str) -> MlflowException:
    """The exception MLflow's scoring server turns into a 400 carrying just ``message``."""
    return MlflowException.invalid_parameter_value(message)


def image_files(model_input: Any, budgets: ServeParams | None = None) -> list[bytes]:
    """The image files (bytes) of the ``image`` column (base64 text of JPEG/PNG files; whitespace and a
    ``data:image/...;base64,`` prefix are allowed), checked against ``budgets`` (default :class:`ServeParams`)
    before any is decoded into pixels: at most ``max_rows`` rows, ``max_request_bytes`` bytes of files in all
    (from the base64 lengths, before decoding the base64), ``max_image_pixels`` pixels per image (its header).

    Raises:
        RequestTooLarge: over a budget (HTTP 413), naming the limit, its param and the row.
        MlflowException: INVALID_PARAMETER_VALUE naming the missing column or the first bad row and why.
    """
    budgets = budgets or ServeParams()
    if not isinstance(model_input, pd.DataFrame) or "image" not in model_input.columns:
        cols = list(model_input.columns) if isinstance(model_input, pd.DataFrame) else type(model_input).__name__
        raise bad_request(f"the input has no 'image' column (got {cols}): send one base64-encoded image file per "
                          "row in a column 'image'")
    rows = len(model_input)
    if rows > budgets.max_rows:
        raise RequestTooLarge(f"the request holds {rows} images (rows), over the limit of {budgets.max_rows} "
                              "(serve.max_rows): send them in several requests")
    texts = []
    for i, text in enumerate(model_input["image"].tolist()):
        where = f"row {i}: 'image'"
        if not isinstance(text, str):
            what = "missing" if text is None or (np.isscalar(text) and pd.isna(text)) else \
                f"{type(text).__name__} {repr(text)[:40]}"
            raise bad_request(f"{where} is {what}, not the base64 text of an image file")
        if text.startswith("data:") and "," in text:
            text = text.split(",", 1)[1]
        texts.append(text)
    # bytes of the files = 3/4 of the base64 characters (whitespace not counted; padding counted up: an upper
    # bound within 2 bytes a row), without decoding: the body can be refused before any work
    total = sum((len(t) - sum(map(t.count, " \t\r\n"))) * 3 // 4 for t in texts)
    if total > budgets.max_request_bytes:
        raise RequestTooLarge(f"the request holds {total:,} bytes of images, over the limit of "
                              f"{budgets.max_request_bytes:,} bytes (serve.max_request_bytes): send fewer or smaller "
                              "images per request")
    files = []
    for i, text in enumerate(texts):
        where = f"row {i}: 'image'"
        text = "".join(text.split())
        if not text:
            raise bad_request(f"{where} is empty: expected the base64 text of an image file")
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as err:
            raise bad_request(f"{where} is not valid base64 ({err})") from None
        width, height = _header_size(i, data, budgets.max_image_pixels)
        if width * height > budgets.max_image_pixels:
            raise RequestTooLarge(f"{where} is {width} x {height} = {width * height:,} pixels, over the limit of "
                                  f"{budgets.max_image_pixels:,} pixels per image (serve.max_image_pixels): send it "
                                  "scaled down")
        files.append(data)
    return files


_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def _header_size(row: int, data: bytes, max_pixels: int) -> tuple[int, int]:
    """(width, height) of an image file from its header (Pillow reads the header only). A header Pillow refuses
    as a decompression bomb (more than twice ``Image.MAX_IMAGE_PIXELS``) is over any pixel budget.

    Raises:
        RequestTooLarge: a header Pillow refuses as a decompression bomb.
        MlflowException: INVALID_PARAMETER_VALUE when no image format is recognised.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except Image.DecompressionBombError as err:
        found = _BOMB_PIXELS.search(str(err))
        claims = f"{int(found[1]):,}" if found else f"more than {2 * Image.MAX_IMAGE_PIXELS:,}"
        raise RequestTooLarge(f"row {row}: 'image' claims {claims} pixels in its header, over the limit of "
                              f"{max_pixels:,} pixels per image (serve.max_image_pixels)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise bad_request(f"row {row}: 'image' is not a base64-encoded image file: its {len(data)} bytes do not "
                          "decode as an image (JPEG, PNG, ...)") from None


def decode_image(row: int, data: bytes) -> np.ndarray:
    """The BGR uint8 image (H, W, 3) of row ``row``'s file bytes (OpenCV, as ``yolox predict`` reads files).

    Raises:
        MlflowException: INVALID_PARAMETER_VALUE naming the row when OpenCV cannot decode it.
    """
    import cv2

    where = f"row {row}: 'image'"
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    except cv2.error as err:  # e.g. a header claiming more pixels than OpenCV's limit
        raise bad_request(f"{where}: OpenCV refuses the image ({opencv_reason(err)})") from None
    if img is None:
        raise bad_request(f"{where} is not a base64-encoded image file: its {len(data)} bytes do not decode "
                          "as an image (JPEG, PNG, ...)")
    return img


def request_thresholds(stored: dict[str, Any], params: dict[str, Any] | None) -> dict[str, Any]:
    """The model's thresholds with a request's ``params`` applied, validated by :class:`ServeParams`' rules.

    Raises:
        MlflowException: INVALID_PARAMETER_VALUE naming the bad or unknown param.
    """
    unknown = sorted(set(params or {}) - set(stored))
    if unknown:
        raise bad_request(f"params: unknown {', '.join(unknown)} (known: {', '.join(stored)})")
    try:
        serve = with_options(ServeParams(**stored), {k: (f"params.{k}", v) for k, v in (params or {}).items()})
    except ConfigError as err:
        raise bad_request(str(err)) from None
    return serve.model_dump()
