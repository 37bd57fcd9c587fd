"""Helpers of the predict-source tests: a loopback HTTP server and videos made from coco128 images."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np


def make_video(path: Path, images: Sequence[Path], size: tuple[int, int] = (320, 240), fps: float = 5.0) -> Path:
    """A video of ``images`` (each resized to ``size`` = (width, height)) written by ``cv2.VideoWriter``: MJPG in
    an .avi, MPEG-4 (mp4v) otherwise."""
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, size)
    assert writer.isOpened(), path
    for p in images:
        writer.write(cv2.resize(cv2.imread(str(p)), size, interpolation=cv2.INTER_AREA))
    writer.release()
    return path


def read_frames(path: Path) -> list[np.ndarray]:
    """Every frame OpenCV decodes from a video."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


class _Handler(http.server.BaseHTTPRequestHandler):
    """``/files/<name>``: a file of the served folder (Content-Length set); ``/stream/<name>``: the same bytes
    without a Content-Length (HTTP/1.0, ends when the connection closes); ``/slow/<name>``: answers after
    ``slow_seconds``; anything else: 404."""

    folder: Path
    slow_seconds = 3.0

    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/", 1)
        if len(parts) != 2 or parts[0] not in ("files", "stream", "slow") or not (self.folder / parts[1]).is_file():
            self.send_error(404, "File not found")
            return
        data = (self.folder / parts[1]).read_bytes()
        if parts[0] == "slow":
            time.sleep(self.slow_seconds)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if parts[0] != "stream":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            for i in range(0, len(data), 16384):
                self.wfile.write(data[i:i + 16384])
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading (a size limit)
            pass

    def log_message(self, *args: object) -> None:  # quiet
        pass


@contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """An HTTP server on a free loopback port serving ``folder`` (see :class:`_Handler`); yields its base URL."""
    handler = type("Handler", (_Handler,), {"folder": folder})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
