"""A tiny stand-in for an MLflow tracking server on loopback (``http.server``), for the tracking fault tests:
it answers the few REST calls the preflight and the metrics journal make (experiments and registered-models
search, ``runs/log-batch``, ``metrics/get-history``) and records every metric it is given, without MLflow's
own deduplication, so a test sees each metric as many times as it was sent. It can be made to fail: every
answer an HTTP ``status``, answers ``delay`` seconds late, or take a log-batch and drop the connection
without answering (``swallow``: a lost answer). ``stop()`` closes the port (connection refused); ``start()``
opens the same port again."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from helpers.http import start


class MlflowStub:
    """See the module doc. ``metrics``: (run_id, key, value, timestamp, step) in the order received."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.status: int | None = None
        self.delay = 0.0
        self.swallow = 0
        self.metrics: list[tuple[str, str, float, int, int]] = []
        self.requests: list[tuple[str, str]] = []
        self.auth: list[str | None] = []
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MlflowStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                stub._answer(self, "GET")

            def do_POST(self) -> None:
                stub._answer(self, "POST")

        self._server = start(Handler, self.port)     # HTTPServer reuses the address: the same port again
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def logged(self, run_id: str | None = None) -> list[tuple[str, int]]:
        """(key, step) of every metric received (of ``run_id``), duplicates included."""
        with self._lock:
            return [(k, s) for r, k, _v, _t, s in self.metrics if run_id in (None, r)]

    def _answer(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = json.loads(h.rfile.read(length) or b"{}") if length else {}
        with self._lock:
            self.requests.append((method, url.path))
            self.auth.append(h.headers.get("Authorization"))
        if self.delay:
            time.sleep(self.delay)
        if self.status is not None:
            return self._send(h, self.status, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "stub says no"})
        if url.path == "/api/2.0/mlflow/runs/log-batch":
            with self._lock:
                self.metrics += [(body["run_id"], m["key"], float(m["value"]), int(m["timestamp"]),
                                  int(m.get("step", 0))) for m in body.get("metrics", [])]
                if self.swallow:
                    self.swallow -= 1
                    h.close_connection = True
                    h.connection.shutdown(socket.SHUT_RDWR)   # taken, but the client never hears it
                    return None
            return self._send(h, 200, {})
        if url.path == "/api/2.0/mlflow/metrics/get-history":
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            with self._lock:
                rows = [{"key": k, "value": v, "timestamp": t, "step": s} for r, k, v, t, s in self.metrics
                        if r == q.get("run_id") and k == q.get("metric_key")]
            return self._send(h, 200, {"metrics": rows})
        if url.path in ("/api/2.0/mlflow/experiments/search", "/api/2.0/mlflow/registered-models/search",
                        "/health"):
            return self._send(h, 200, {})
        return self._send(h, 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": url.path})

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except OSError:   # a late answer to a client that gave up
            h.close_connection = True
