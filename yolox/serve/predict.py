"""``yolox predict``: detections on images, folders, videos and http(s) URLs, drawn and written as JSON (the
detection path of eval and serving, :func:`yolox.inference.detect`, with boxes clipped to the image).

Sources (any number, in one run):

- an image file, or a folder and its sub-folders: images (:data:`IMAGE_SUFFIXES`) and videos
  (:data:`VIDEO_SUFFIXES`); other files of a folder are skipped (:data:`UNSUPPORTED_FILE`);
- a video file (OpenCV ``VideoCapture``, FFmpeg): every frame is detected, an annotated copy of the video is
  written, and the JSON holds each frame's detections;
- an ``http://`` or ``https://`` URL: downloaded with ``requests`` (through the environment's proxy,
  ``http_proxy`` / ``https_proxy`` / ``no_proxy``) to a temporary file (at most
  ``predict.download_max_mb``, ``predict.download_timeout_s`` per wait, ``predict.download_deadline_s`` in all,
  redirects followed to http(s) only, at most ``predict.download_max_redirects``), then an image or a video by
  its extension (or its ``Content-Type``).

Outputs are written atomically (temp file + rename) and never over an input: a run whose ``--out`` would write
a drawn copy or ``predictions.json`` over one of its sources is refused before any work (:func:`check_outputs`).

Nothing a source holds stops the run: an image is checked as ``prepare`` checks it
(:func:`yolox.data.validate.read_checked_image`: it decodes, and a JPEG is not cut short), a video must open
and hold a frame, a URL must download within the limits; one that fails is skipped with its reason, logged and
listed in the JSON beside the detections of every good item.
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import os
import re
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import requests
import urllib3

from yolox.config import PredictParams, ServeParams, with_options
from yolox.data.readers import NOT_AN_IMAGE, Issue, RawImage
from yolox.data.sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES, no_images, source_files
from yolox.data.validate import read_checked_image
from yolox.errors import ConfigError, DataError
from yolox.files import atomic_path, regular_file_problem, same_file, write_json
from yolox.inference import Backend, detect
from yolox.ops.draw import draw
from yolox.ops.nms import Detections

log = logging.getLogger("yolox.predict")

SERVE = ServeParams()  # the default thresholds (yolox.config owns them)
URL_SCHEMES = ("http", "https")
PREDICTIONS_JSON = "predictions.json"
VIDEO_CODECS = {".avi": "MJPG"}
"""FourCC of the annotated video by its extension; anything else is written as MPEG-4 (``mp4v``) in an .mp4."""

# Skip reasons (the "reason" of a "skipped" entry; the image ones are prepare's, yolox.data.readers)
UNSUPPORTED_FILE = "not an image file"
"""A file in a source folder whose extension is neither an image's nor a video's."""
UNSUPPORTED_SOURCE = "unsupported source"
"""A URL whose scheme is not http or https."""
DOWNLOAD_FAILED = "download failed"
DOWNLOAD_TOO_LARGE = "download too large"
NOT_A_VIDEO = "not a decodable video"
EMPTY_VIDEO = "video without frames"
VIDEO_NOT_WRITTEN = "annotated video not written"


@dataclass
class PredictResult:
    """What :func:`predict` did: images predicted, detections found (images and video frames), the JSON written,
    the skipped sources (``{"image", "reason", "detail"}`` each), videos predicted and their frames."""

    out_dir: Path
    images: int
    detections: int
    json_path: Path
    skipped: list[dict[str, str]] = field(default_factory=list)
    videos: int = 0
    frames: int = 0


def is_url(source: str | Path) -> bool:
    """Whether ``source`` is written as a URL (``scheme://...``), whatever its scheme."""
    return isinstance(source, str) and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", source) is not None


# --- reading sources -----------------------------------------------------------------------------------------


def read_image(path: Path) -> np.ndarray | dict[str, str]:
    """The image as BGR uint8 (H, W, 3) (grey, alpha and 16-bit files converted, EXIF rotation applied), decoded
    once, or its skip record ``{"image", "reason", "detail"}`` when ``prepare`` would reject it: not decodable, or
    a JPEG cut short (OpenCV would decode it with a grey bottom and only a warning). Any size is accepted."""
    try:
        img = read_checked_image(RawImage(path, str(path), None, None), min_image_size=1)
    except cv2.error as err:  # e.g. a header claiming more pixels than OpenCV's limit (a decompression bomb)
        return {"image": str(path), "reason": NOT_AN_IMAGE, "detail": f"OpenCV refuses it: {opencv_reason(err)}"}
    if isinstance(img, Issue):
        return {"image": str(path), "reason": img.reason, "detail": img.detail}
    return img


def opencv_reason(err: Exception) -> str:
    """The failed check of a ``cv2.error`` (e.g. ``pixels <= CV_IO_MAX_IMAGE_PIXELS``), without OpenCV's
    source file and line."""
    text = " ".join(str(err).split())
    return text.split("Assertion failed)")[-1].split(" in function")[0].strip() if "Assertion failed)" in text \
        else text.split("error: ")[-1]


REDIRECTS = (301, 302, 303, 307, 308)
"""HTTP statuses followed to their ``Location`` (http and https targets only)."""
REQUEST_HEADERS = {"User-Agent": "yolox-predict", "Accept-Encoding": "identity"}
"""Headers of every download request: the bytes as stored (no compression to undo, Content-Length is the size)."""


def download(url: str, folder: Path, limits: PredictParams) -> Path | dict[str, str]:
    """Download an http(s) ``url`` into a new sub-folder of ``folder`` (a file named after the URL's last path
    part, its extension from the ``Content-Type`` when it has none), or its skip record ``{"image": url,
    "reason", "detail"}``:

    - another scheme, given or redirected to (:data:`UNSUPPORTED_SOURCE`; the detail names the redirect target and
      its scheme: redirects are followed here, one request per hop, not by ``requests``, so that each target's
      scheme is checked and the hops are counted);
    - an HTTP error status, no connection (to the server or to the proxy, which the detail names), more than
      ``limits.download_max_redirects`` redirects (a loop), no answer within ``limits.download_timeout_s`` (s,
      connecting and between received bytes), the whole download (redirects included) not done within
      ``limits.download_deadline_s`` (s), a body shorter than its ``Content-Length`` (:data:`DOWNLOAD_FAILED`);
    - more than ``limits.download_max_mb`` (MB) announced or received (:data:`DOWNLOAD_TOO_LARGE`; the transfer
      stops there).

    Fetched with ``requests`` and the environment's settings: the proxy of ``http_proxy`` / ``https_proxy`` /
    ``all_proxy`` (or their upper-case names) unless ``no_proxy`` lists the host, ``REQUESTS_CA_BUNDLE``,
    ``~/.netrc``. Each wait for the server (connecting, the status line and headers, each body read) is at most
    ``download_timeout_s``; those up to the headers are also at most the time left before the deadline, and a
    body still arriving at the deadline (a server that drips bytes, or stalls between them) is cut off there
    (its socket shut for reading: ``urllib3.HTTPResponse.shutdown``). So the call returns within about
    ``download_deadline_s`` whatever the server does once its headers are in (a server dripping its headers one
    byte per wait is bounded per wait only). The file is written atomically (:func:`yolox.files.atomic_path`):
    a partial download leaves no file. Raises nothing for a bad URL, server or proxy.
    """

    def skip(reason: str, detail: str) -> dict[str, str]:
        return {"image": url, "reason": reason, "detail": detail}

    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port   # a port out of range raises ValueError here, which says why (requests' error would not)
    except ValueError as err:
        return skip(DOWNLOAD_FAILED, f"{type(err).__name__}: {err}")
    if parts.scheme.lower() not in URL_SCHEMES:
        return skip(UNSUPPORTED_SOURCE, f"scheme {parts.scheme or '(none)'!r}: only http and https URLs are fetched")
    if not parts.hostname:
        return skip(DOWNLOAD_FAILED, "the URL names no host")
    clock = _Deadline(limits)
    target = url
    try:
        with requests.Session() as session:
            session.trust_env = True   # proxies, CA bundle and .netrc from the environment (requests' default)
            for _ in range(limits.download_max_redirects + 1):
                wait = clock.wait()
                with session.get(target, headers=REQUEST_HEADERS, stream=True, allow_redirects=False,
                                 timeout=(wait, wait)) as resp:
                    location = resp.headers.get("Location")
                    if resp.status_code in REDIRECTS and location:
                        target = urllib.parse.urljoin(target, location.strip())
                        hop = urllib.parse.urlsplit(target)
                        scheme = hop.scheme.lower()
                        if scheme not in URL_SCHEMES:
                            return skip(UNSUPPORTED_SOURCE, f"redirected to {_shown_url(target)}: scheme "
                                        f"{scheme or '(none)'!r}: only http and https URLs are fetched")
                        if not hop.hostname:
                            return skip(DOWNLOAD_FAILED, f"redirected to {_shown_url(target)}, which names no host")
                        _ = hop.port   # out of range: ValueError
                        continue
                    if resp.status_code >= 400 or resp.status_code in REDIRECTS:
                        return skip(DOWNLOAD_FAILED, f"HTTP {resp.status_code} {resp.reason}")
                    got = _receive(resp, clock, folder, urllib.parse.urlsplit(target).path, limits)
                    return skip(DOWNLOAD_TOO_LARGE, got) if isinstance(got, str) else got
            return skip(DOWNLOAD_FAILED, f"more than {limits.download_max_redirects} redirects "
                                         "(predict.download_max_redirects): a redirect loop?")
    except (TimeoutError, requests.Timeout, urllib3.exceptions.ReadTimeoutError):
        return skip(DOWNLOAD_FAILED, clock.timed_out())
    except requests.exceptions.ProxyError as err:
        proxy = requests.utils.select_proxy(target, requests.utils.get_environ_proxies(target)) or "(unknown)"
        return skip(DOWNLOAD_FAILED, f"proxy {_shown_url(proxy)}: {_failure(err, clock.timed_out())}")
    except (OSError, urllib3.exceptions.HTTPError, HTTPException, ValueError) as err:  # requests' errors are OSErrors
        return skip(DOWNLOAD_FAILED, _failure(err, clock.timed_out()))


class _Deadline:
    """The time left of one download: each wait is bounded by ``download_timeout_s`` and the total by
    ``download_deadline_s``; remembers which bound the last wait had (for the skip's detail)."""

    def __init__(self, limits: PredictParams) -> None:
        self.limits = limits
        self.end = time.monotonic() + limits.download_deadline_s
        self.by_deadline = False
        self.cut = False

    def wait(self) -> float:
        """Seconds the next wait for the server may last (> 0). Raises TimeoutError when the deadline has passed."""
        left = self.end - time.monotonic()
        if left <= 0:
            self.by_deadline = True
            raise TimeoutError
        self.by_deadline = left < self.limits.download_timeout_s
        return min(left, self.limits.download_timeout_s)

    @contextlib.contextmanager
    def guard(self, raw: urllib3.BaseHTTPResponse) -> Iterator[None]:
        """Run the block (reading ``raw``'s body) with a timer that shuts ``raw``'s socket for reading at the
        deadline: a read blocked then (or a drip that keeps one read going) ends at once. Raises TimeoutError
        when the timer fired, whatever the block did (an early end of the body, a broken connection)."""
        timer = threading.Timer(max(self.end - time.monotonic(), 0.0), self._cut, (raw,))
        timer.daemon = True
        timer.start()
        try:
            yield
        except Exception:
            if not self.cut:
                raise
        finally:
            timer.cancel()
        if self.cut:
            self.by_deadline = True
            raise TimeoutError

    def _cut(self, raw: urllib3.BaseHTTPResponse) -> None:
        self.cut = True
        with contextlib.suppress(OSError, ValueError, RuntimeError):   # closed already: no read to wake
            raw.shutdown()

    def timed_out(self) -> str:
        if self.by_deadline:
            return f"not downloaded within {self.limits.download_deadline_s:g} s (predict.download_deadline_s)"
        return _timed_out(self.limits)


def _receive(resp: requests.Response, clock: _Deadline, folder: Path, url_path: str,
             limits: PredictParams) -> Path | str:
    """The body of ``resp`` (a streamed response) in a new file under ``folder``, or why not (more than
    ``download_max_mb``), read as it arrives (``read1``: one wait for the server per read) until the deadline
    (:meth:`_Deadline.guard`). Raises TimeoutError past the deadline, urllib3's errors for a broken transfer."""
    max_bytes = int(limits.download_max_mb * 1024 * 1024)
    limit = f"{limits.download_max_mb:g} MB (predict.download_max_mb)"
    length = resp.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        return f"Content-Length {int(length)} bytes: more than {limit}"
    path = Path(tempfile.mkdtemp(dir=folder)) / _download_name(url_path, _content_type(resp.headers))
    received = 0
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f, clock.guard(resp.raw):
            while True:   # read no further than one byte past the limit
                clock.wait()
                chunk = resp.raw.read1(min(1 << 16, max_bytes + 1 - received))   # what has come, not all 64 KiB
                if not chunk:
                    break
                received += len(chunk)
                if received > max_bytes:
                    raise _TooLarge
                f.write(chunk)
    except _TooLarge:
        with contextlib.suppress(OSError):
            path.parent.rmdir()
        return f"the body passed {limit}: stopped there"
    except BaseException:
        with contextlib.suppress(OSError):
            path.parent.rmdir()
        raise
    return path


class _TooLarge(Exception):
    pass


def _content_type(headers: Mapping[str, str]) -> str:
    """The media type of a ``Content-Type`` header, lower case without parameters; ``text/plain`` when missing
    or malformed (as ``email.message.Message.get_content_type``)."""
    media = headers.get("Content-Type", "").split(";")[0].strip().lower()
    return media if media.count("/") == 1 else "text/plain"


def _failure(err: BaseException, timed_out: str) -> str:
    """The innermost cause of a failed request (requests and urllib3 wrap it: ``.reason``, ``__cause__``, an
    exception argument), in words: ``timed_out`` for a socket timeout, the OS's words for another socket error
    (``Connection refused``), ``TLS: <reason>``, a body cut short, else ``<type>: <message>``."""
    seen = {id(err)}
    while True:
        reason = getattr(err, "reason", None)
        inner = next((e for e in (reason, err.__cause__, *err.args) if isinstance(e, BaseException)
                      and id(e) not in seen), None)
        if inner is None:
            break
        seen.add(id(inner))
        err = inner
    if isinstance(err, TimeoutError):
        return timed_out
    if isinstance(err, ssl.SSLError):
        return f"TLS: {err.reason or err}"
    if isinstance(err, urllib3.exceptions.IncompleteRead):
        return f"the body ended after {err.partial} bytes, {err.expected} bytes short of its Content-Length"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return f"{type(err).__name__}: {err}"


def _shown_url(url: str) -> str:
    """``url`` without its user:password part, at most 200 characters."""
    parts = urllib.parse.urlsplit(url)
    if "@" in parts.netloc:
        url = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
    return url if len(url) <= 200 else url[:197] + "..."


def _timed_out(limits: PredictParams) -> str:
    return f"no answer within {limits.download_timeout_s:g} s (predict.download_timeout_s)"


def _download_name(url_path: str, content_type: str) -> str:
    """The last part of the URL path (letters, digits, ``._-``), with an extension from the Content-Type when it
    has no image or video one."""
    name = Path(urllib.parse.unquote(url_path)).name or "download"
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[-100:]
    if Path(name).suffix.lower() not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
        name += mimetypes.guess_extension(content_type) or ".bin"
    return name


# --- writing -------------------------------------------------------------------------------------------------


def _output_dir(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file: give a folder for the drawn images and predictions.json")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {out_dir}: cannot create the folder ({err.strerror or err})") from None
    return out_dir


def _relative(path: Path, source: Path) -> Path:
    return Path(path.name) if source.is_file() or source == path else path.relative_to(source)


class _Outputs:
    """Where drawn images and annotated videos go: their path below their source folder (or their name), in
    ``out_dir`` (:meth:`natural`); a second item of the same name (from another source), or a name that is one of
    the run's ``inputs`` (a downloaded file's name), gets ``-2``, ``-3``, ... appended."""

    def __init__(self, out_dir: Path, inputs: Sequence[Path] = ()) -> None:
        self.out_dir = out_dir
        self.used: set[Path] = set()
        self.inputs = {p.resolve() for p in inputs}
        self.input_ids = {_file_id(p) for p in inputs} - {None}

    @staticmethod
    def natural(rel: Path, video: bool = False) -> Path:
        """The output's path below ``out_dir`` for an item at ``rel``: ``rel`` itself, ``.png`` appended to an
        image and ``.mp4`` to a video whose extension OpenCV does not write."""
        if video and rel.suffix.lower() not in (".mp4", *VIDEO_CODECS):
            return rel.with_name(rel.name + ".mp4")
        if not video and rel.suffix.lower() not in IMAGE_SUFFIXES:
            return rel.with_name(rel.name + ".png")
        return rel

    def path(self, rel: Path, video: bool = False) -> Path:
        rel = self.natural(rel, video)
        out, k = self.out_dir / rel, 1
        while out in self.used or out.resolve() in self.inputs or _file_id(out) in self.input_ids:
            k += 1
            out = self.out_dir / rel.with_name(f"{rel.stem}-{k}{rel.suffix}")
        self.used.add(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        return out


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_outputs(sources: str | Path | Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """Refuse, before any work, a run that would write an output over one of its inputs: ``out_dir`` is a source
    folder, or a source file's drawn copy (``<out_dir>/<name>``) or ``predictions.json`` is that file itself (the
    same path, or the same file through a link; :func:`yolox.files.same_file`), e.g. ``--source photos/a.jpg
    --out photos``. Returns the local input files (images and videos).

    Why refuse rather than write beside under another name: the drawn copy is named like its source in every
    other run (scripts read ``<out>/<name>``), and a drawn copy left in the source folder would be taken for a
    photo by the next run over that folder. A refusal loses nothing and says what to change.

    Raises:
        ConfigError: one line naming ``--out``, the input and the output that would overwrite it.
    """
    sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
    out_dir = Path(out_dir)
    files: list[Path] = []
    for s in sources:
        if is_url(str(s)):
            continue
        root = Path(s)
        if root.is_dir() and same_file(root, out_dir):
            raise ConfigError(f"--out {out_dir} is the source folder {root}: the drawn copies would be written over "
                              f"its images; give another folder for --out (e.g. {out_dir / 'predicted'})")
        images, videos, _ = source_files(root, out_dir.resolve())
        for items, video in ((images, False), (videos, True)):
            for f in items:
                drawn = out_dir / _Outputs.natural(_relative(f, root), video)
                if same_file(drawn, f):
                    raise ConfigError(f"--out {out_dir}: the drawn copy of {f} would be written over it ({drawn}); "
                                      "give another folder for --out")
                files.append(f)
    json_path = out_dir / PREDICTIONS_JSON
    hit = next((f for f in files if same_file(json_path, f)), None)
    if hit is not None:
        raise ConfigError(f"--out {out_dir}: {json_path} would be written over the source {hit}; give another "
                          "folder for --out")
    return files


def detections_json(det: Detections, names: list[str]) -> list[dict[str, Any]]:
    """``[{"box_xyxy": [x0, y0, x1, y1], "score", "class_id", "class_name"}, ...]`` (pixels to 0.01, scores to
    1e-5)."""
    return [{"box_xyxy": [round(v, 2) for v in b], "score": round(s, 5), "class_id": int(c), "class_name": names[c]}
            for b, s, c in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist())]


# --- the command ---------------------------------------------------------------------------------------------


@dataclass
class _Run:
    backend: Backend
    names: list[str]
    img_size: int
    thresholds: tuple[float, float, int]
    outputs: _Outputs
    images: list[dict[str, Any]] = field(default_factory=list)
    videos: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    detections: int = 0

    def skip(self, record: dict[str, str]) -> None:
        log.warning("skipped %s: %s (%s)", record["image"], record["reason"], record["detail"])
        self.skipped.append(record)

    def detect(self, img: np.ndarray) -> Detections:
        det = detect(self.backend, [img], self.img_size, *self.thresholds, clip=True)[0]
        self.detections += len(det)
        return det

    def image(self, path: Path, name: str, rel: Path) -> None:
        img = read_image(path)
        if isinstance(img, dict):
            self.skip({**img, "image": name})
            return
        det = self.detect(img)
        entry: dict[str, Any] = {"image": name, "detections": detections_json(det, self.names)}
        out = self.outputs.path(rel)
        try:
            with atomic_path(out) as tmp:   # the same suffix: cv2.imwrite picks the format from it
                if not cv2.imwrite(str(tmp), draw(img, det, self.names)):
                    raise _NotWritten
        except (_NotWritten, cv2.error) as err:
            entry["note"] = f"drawn copy not written: OpenCV cannot write {out.name}" + \
                (f" ({opencv_reason(err)})" if isinstance(err, cv2.error) else "")
            log.warning("%s: %s", name, entry["note"])
        self.images.append(entry)

    def video(self, path: Path, name: str, rel: Path) -> None:
        """Every frame detected and drawn into an annotated copy, written into a temp file beside its output and
        renamed onto it when complete (:func:`yolox.files.atomic_path`): a failed or interrupted run leaves no
        partial video."""
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            self.skip({"image": name, "reason": NOT_A_VIDEO, "detail": "OpenCV (FFmpeg) cannot open it as a video"})
            return
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = fps if fps and np.isfinite(fps) and fps > 0 else 25.0
        announced = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        frames: list[dict[str, Any]] = []
        try:
            ok, frame = cap.read()
            if not ok or frame is None:
                self.skip({"image": name, "reason": EMPTY_VIDEO, "detail": "OpenCV opens it but reads no frame"})
                return
            size = (frame.shape[1], frame.shape[0])
            out = self.outputs.path(rel, video=True)
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS.get(out.suffix.lower(), "mp4v"))
            with atomic_path(out) as tmp:
                writer = cv2.VideoWriter(str(tmp), fourcc, fps, size)
                try:
                    if not writer.isOpened():
                        raise _NotWritten
                    while ok and frame is not None:
                        det = self.detect(frame)
                        drawn = draw(frame, det, self.names)
                        writer.write(drawn if (drawn.shape[1], drawn.shape[0]) == size else cv2.resize(drawn, size))
                        frames.append({"frame": len(frames), "detections": detections_json(det, self.names)})
                        ok, frame = cap.read()
                finally:
                    writer.release()
        except _NotWritten:
            self.skip({"image": name, "reason": VIDEO_NOT_WRITTEN,
                       "detail": f"OpenCV cannot write {out.name} ({out.suffix} video)"})
            return
        finally:
            cap.release()
        entry: dict[str, Any] = {"video": name, "drawn": str(out), "fps": round(fps, 3), "width": size[0],
                                 "height": size[1], "frames": frames}
        if announced > len(frames):
            entry["note"] = f"read {len(frames)} of the {announced} frames its header announces (cut short?)"
            log.warning("%s: %s", name, entry["note"])
        self.videos.append(entry)


class _NotWritten(Exception):
    """OpenCV could not write an output file (an unsupported format or codec)."""


def predict(backend: Backend, source: str | Path | Sequence[str | Path], out_dir: str | Path, names: list[str],
            img_size: int, conf_thresh: float = SERVE.conf_thresh, nms_thresh: float = SERVE.nms_thresh,
            max_det: int = SERVE.max_det, limits: PredictParams | None = None) -> PredictResult:
    """Detect on every image and video frame of ``source`` (one or several: image or video files, folders and
    their sub-folders, http(s) URLs; module docstring); write the drawn images and annotated videos to
    ``out_dir`` (a folder's items at their relative paths) and ``<out_dir>/predictions.json``::

        {"images": [{"image": path or URL, "detections": [{"box_xyxy": [x0, y0, x1, y1], "score", "class_id",
                                                            "class_name"}, ...]}, ...],
         "videos": [{"video": path or URL, "drawn": annotated video, "fps", "width", "height",
                     "frames": [{"frame": 0, "detections": [...]}, ...], ("note": "read 4 of the 6 frames ...")}],
         "skipped": [{"image": path or URL, "reason": "truncated JPEG", "detail": "..."}, ...]}

    Boxes are xyxy in original-image pixels, clipped to the image (evaluation keeps them unclipped). An item that
    cannot be read (:func:`read_image`, a video that does not open or holds no frame, a failed
    :func:`download`, a folder's file of another type: :data:`UNSUPPORTED_FILE`) is skipped with its reason:
    logged, and listed under ``skipped``; the other items are predicted all the same. ``limits``: the download
    limits (default :class:`~yolox.config.PredictParams`). Thresholds: ``conf_thresh`` in [0, 1], ``nms_thresh``
    in (0, 1], ``max_det`` >= 1 (:class:`~yolox.config.ServeParams`' rules).

    Every output (drawn image, annotated video, the JSON) is written atomically (temp file beside it + rename:
    :func:`yolox.files.atomic_path`), and none is ever written over an input (:func:`check_outputs`).

    Raises:
        DataError: a local source does not exist; no items at all; or none could be read (the JSON is written
            first).
        ConfigError: ``out_dir`` is a file or cannot be created; an output would overwrite an input
            (:func:`check_outputs`); a threshold out of range. All before any image is read.
    """
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    out_dir = Path(out_dir)
    limits = limits or PredictParams()
    local: list[tuple[Path, tuple[list[Path], list[Path], list[Path]]]] = []
    for s in sources:
        if is_url(str(s)):
            continue
        found = source_files(Path(s), out_dir.resolve())
        if not Path(s).exists() or (len(sources) == 1 and not any(found)):
            raise DataError(no_images(Path(s)))
        local.append((Path(s), found))
    inputs = check_outputs(sources, out_dir)
    serve = with_options(SERVE, {"conf_thresh": ("conf_thresh", conf_thresh), "nms_thresh": ("nms_thresh", nms_thresh),
                                 "max_det": ("max_det", max_det)})
    run = _Run(backend, names, img_size, (serve.conf_thresh, serve.nms_thresh, serve.max_det),
               _Outputs(_output_dir(out_dir), inputs))
    for _, (_, _, others) in local:
        for p in others:
            kind = regular_file_problem(p)   # a FIFO, socket or device: named as such, never opened
            run.skip({"image": str(p), "reason": UNSUPPORTED_FILE,
                      "detail": kind or f"extension {p.suffix or '(none)'!r} is not one of {sorted(IMAGE_SUFFIXES)}"})
    with tempfile.TemporaryDirectory(prefix="yolox-predict-") as tmp:
        it = iter(local)
        for s in sources:
            if is_url(str(s)):
                got = download(str(s), Path(tmp), limits)
                if isinstance(got, dict):
                    run.skip(got)
                    continue
                rel = Path(got.name)
                if got.suffix.lower() in VIDEO_SUFFIXES:
                    run.video(got, str(s), rel)
                else:
                    run.image(got, str(s), rel)
                continue
            root, (images, videos, _) = next(it)
            for p in images:
                run.image(p, str(p), _relative(p, root))
            for p in videos:
                run.video(p, str(p), _relative(p, root))
    json_path = write_json(out_dir / PREDICTIONS_JSON, {"images": run.images, "videos": run.videos,
                                                        "skipped": run.skipped})
    if not run.images and not run.videos:
        what = str(sources[0]) if len(sources) == 1 else f"the {len(sources)} sources"
        if not run.skipped:
            raise DataError(f"nothing to predict at {what}: no images or videos")
        raise DataError(f"no image of {what} could be read ({len(run.skipped)} skipped: "
                        f"{', '.join(sorted({s['reason'] for s in run.skipped}))}); see {json_path}")
    return PredictResult(out_dir, len(run.images), run.detections, json_path, run.skipped, len(run.videos),
                         sum(len(v["frames"]) for v in run.videos))
