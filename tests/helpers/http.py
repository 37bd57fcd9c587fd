"""Loopback HTTP servers for the tests: :func:`serve` runs any request handler on a free port in a thread;
:class:`FileSite` is the one file site the download tests share (predict's URL sources, its limits, proxies).

Routes of :class:`FileSite` (``<name>``: a file of its ``folder``; anything else is a 404 "File not found"):

- ``/files/<name>``: the file, with its Content-Length;
- ``/stream/<name>``: the same bytes without a Content-Length (HTTP/1.0: the body ends when the connection
  does);
- ``/late/<name>``: the file, headers after ``late_seconds`` (3 s);
- ``/drip/<name>``: the file one byte every ``drip_seconds`` (0.2 s);
- ``/short/<name>``: announces the file's size, sends its first 100 bytes;
- ``/stall/<name>``: announces the file, sends a byte every 0.1 s for 1 s, stalls 1.9 s, then sends the rest;
- ``/to?<url>``: 302 to ``<url>``; ``/loop``: 302 to itself.

Each request's path and headers are appended to ``seen`` when a list is given.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROUTES = ("files", "stream", "late", "drip", "short", "stall")


class FileSite(BaseHTTPRequestHandler):
    """A folder served at the routes of the module doc."""

    folder: Path
    seen: list[tuple[str, dict[str, str]]] | None = None
    late_seconds = 3.0
    drip_seconds = 0.2
    content_type = "application/octet-stream"

    def do_GET(self) -> None:
        if self.seen is not None:
            self.seen.append((self.path, dict(self.headers.items())))
        if self.path.startswith("/to?"):
            return self._redirect(self.path[4:])
        if self.path == "/loop":
            return self._redirect("/loop")
        kind, _, name = self.path.lstrip("/").partition("/")
        if kind not in ROUTES or not name or not (self.folder / name).is_file():
            self.send_error(404, "File not found")
            return None
        data = (self.folder / name).read_bytes()
        if kind == "late":
            time.sleep(self.late_seconds)
        self.send_response(200)
        self.send_header("Content-Type", self.content_type)
        if kind != "stream":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            if kind == "drip":
                for i in range(len(data)):
                    self._send(data[i:i + 1])
                    time.sleep(self.drip_seconds)
            elif kind == "short":
                self._send(data[:100])
            elif kind == "stall":
                for i in range(10):
                    self._send(data[i:i + 1])
                    time.sleep(0.1)
                time.sleep(1.9)
                self._send(data[10:])
            else:
                for i in range(0, len(data), 16384):
                    self.wfile.write(data[i:i + 16384])
        except (BrokenPipeError, ConnectionResetError):   # the client stopped reading (a limit, a deadline)
            pass
        return None

    def _send(self, chunk: bytes) -> None:
        self.wfile.write(chunk)
        self.wfile.flush()

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:  # quiet
        pass


def start(handler: type[BaseHTTPRequestHandler], port: int = 0, **attrs: object) -> ThreadingHTTPServer:
    """A threading HTTP server on 127.0.0.1:``port`` (0: a free one) answering with a subclass of ``handler``
    that has ``attrs``, serving in a daemon thread. ``shutdown()`` and ``server_close()`` stop it."""
    server = ThreadingHTTPServer(("127.0.0.1", port), type(handler.__name__, (handler,), attrs))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler], **attrs: object) -> Iterator[str]:
    """:func:`start` on a free port for the ``with`` block; yields the base URL
    ``http://127.0.0.1:<port>``."""
    server = start(handler, **attrs)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def serve_folder(folder: Path, **attrs: object) -> AbstractContextManager[str]:
    """:class:`FileSite` serving ``folder`` (``attrs``: ``seen``, ``late_seconds``...) for the ``with`` block;
    yields its base URL."""
    return serve(FileSite, folder=folder, **attrs)
