"""`yolox predict`'s URL downloads on requests (issue 22 follow-up): the environment's proxy is honoured (and
``no_proxy`` bypasses it) for the first request and every redirect hop, a dead proxy is a skip that names it
(without its password), a body still arriving at the deadline is cut off there, and a body shorter than its
Content-Length is a failed download, never a short file.

The origin is the tests' file site (tests/helpers/http.py), the proxy a loopback server in this module; the
image is a real coco128 file. The limit cases that both implementations share (redirects, loops, drip, late
headers, sizes) are in tests/faults/test_faults_inputs.py and tests/faults/test_faults_predict_sources.py.
"""

from __future__ import annotations

import http.client
import http.server
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers.http import serve, serve_folder

from yolox.config import PredictParams
from yolox.serve.predict import download

pytestmark = pytest.mark.timeout(60)   # a download that would hang fails the test instead

GIRAFFE = "000000000025.jpg"
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade"}
LIMITS = PredictParams(download_timeout_s=5, download_deadline_s=10)


class _Proxy(http.server.BaseHTTPRequestHandler):
    """A forward HTTP proxy: ``GET http://host:port/path`` (an absolute URI, as a client sends to a proxy) is
    fetched from ``host:port`` and answered as is; anything else is 400. Records each request line's URI in
    ``seen``."""

    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        parts = urllib.parse.urlsplit(self.path)
        if parts.scheme != "http" or not parts.hostname:
            self.send_error(400, "not an absolute http URI")
            return
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        for key, value in resp.getheaders():
            if key.lower() not in HOP_BY_HOP | {"content-length", "server", "date"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(autouse=True)
def _no_ambient_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy setting of the machine running the tests leaks in: each test sets its own."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def origin(tmp_path_factory: pytest.TempPathFactory, coco128_dir: Path) -> Iterator[SimpleNamespace]:
    folder = tmp_path_factory.mktemp("site")
    image = coco128_dir / "images" / "train2017" / GIRAFFE
    (folder / "a.jpg").write_bytes(image.read_bytes())
    seen: list[tuple[str, dict[str, str]]] = []
    with serve_folder(folder, seen=seen) as url:
        yield SimpleNamespace(url=url, seen=seen, data=image.read_bytes())


@pytest.fixture
def proxy() -> Iterator[SimpleNamespace]:
    seen: list[str] = []
    with serve(_Proxy, seen=seen) as url:
        yield SimpleNamespace(url=url, seen=seen)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("var", ["http_proxy", "HTTP_PROXY"])
def test_download_goes_through_the_proxy(origin: SimpleNamespace, proxy: SimpleNamespace, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    """With the proxy in ``http_proxy`` (or ``HTTP_PROXY``), the GET goes to the proxy as an absolute URI, the
    proxy fetches it from the origin, and the file holds the image's exact bytes."""
    monkeypatch.setenv(var, proxy.url)
    got = download(f"{origin.url}/files/a.jpg", tmp_path, LIMITS)
    assert isinstance(got, Path) and got.name == "a.jpg", got
    assert got.read_bytes() == origin.data
    assert proxy.seen == [f"{origin.url}/files/a.jpg"]
    assert [path for path, _ in origin.seen] == ["/files/a.jpg"]
    assert origin.seen[0][1]["Accept-Encoding"] == "identity"   # forwarded by the proxy as the client sent it


def test_every_redirect_hop_goes_through_the_proxy(origin: SimpleNamespace, proxy: SimpleNamespace,
                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The redirects are followed by download() itself (to check each scheme): each hop is a new request, and
    each goes through the proxy too."""
    monkeypatch.setenv("http_proxy", proxy.url)
    got = download(f"{origin.url}/to?/files/a.jpg", tmp_path, LIMITS)
    assert isinstance(got, Path) and got.read_bytes() == origin.data, got
    assert proxy.seen == [f"{origin.url}/to?/files/a.jpg", f"{origin.url}/files/a.jpg"]


@pytest.mark.parametrize("var", ["no_proxy", "NO_PROXY"])
def test_no_proxy_bypasses_the_proxy(origin: SimpleNamespace, proxy: SimpleNamespace, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    """A host listed in ``no_proxy`` is fetched directly: the proxy sees nothing, the origin gets the request
    (a relative URI, with the download's headers)."""
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv(var, "example.com,127.0.0.1")
    got = download(f"{origin.url}/files/a.jpg", tmp_path, LIMITS)
    assert isinstance(got, Path) and got.read_bytes() == origin.data, got
    assert proxy.seen == []
    assert [path for path, _ in origin.seen] == ["/files/a.jpg"]
    assert (origin.seen[0][1]["Accept-Encoding"], origin.seen[0][1]["User-Agent"]) == ("identity", "yolox-predict")


def test_dead_proxy_is_a_skip_naming_it(origin: SimpleNamespace, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy that refuses connections: the skip names the proxy (not its password) and the OS's reason, at
    once; the origin is never reached; nothing is left in the download folder."""
    monkeypatch.setenv("http_proxy", "http://alice:s3cret@127.0.0.1:9")
    url = f"{origin.url}/files/a.jpg"
    start = time.monotonic()
    got = download(url, tmp_path, LIMITS)
    assert time.monotonic() - start < 2
    assert got == {"image": url, "reason": "download failed",
                   "detail": "proxy http://127.0.0.1:9: Connection refused"}
    assert origin.seen == []
    assert _files(tmp_path) == []


def test_a_stall_near_the_deadline_is_cut_there(origin: SimpleNamespace, tmp_path: Path) -> None:
    """Headers at once, a byte every 0.1 s for 1 s, then a 1.9 s stall (under the 2 s timeout, so no read times
    out before the deadline): the download ends at the 1.5 s deadline (the read blocked in the stall is woken
    there), not when a read would time out (2.5 s) or the body end (2.9 s); the partial file is deleted."""
    limits = PredictParams(download_timeout_s=2, download_deadline_s=1.5)
    url = f"{origin.url}/stall/a.jpg"
    start = time.monotonic()
    got = download(url, tmp_path, limits)
    elapsed = time.monotonic() - start
    assert got == {"image": url, "reason": "download failed",
                   "detail": "not downloaded within 1.5 s (predict.download_deadline_s)"}
    assert 1.4 < elapsed < 1.5 + 0.3, elapsed
    assert _files(tmp_path) == []


def test_a_body_shorter_than_announced_is_a_failed_download(origin: SimpleNamespace, tmp_path: Path) -> None:
    """The server announces the image's size and closes after 100 bytes: a failed download that says so, and no
    100-byte file handed on as the image."""
    url = f"{origin.url}/short/a.jpg"
    got = download(url, tmp_path, LIMITS)
    short = len(origin.data) - 100
    assert got == {"image": url, "reason": "download failed",
                   "detail": f"the body ended after 100 bytes, {short} bytes short of its Content-Length"}
    assert _files(tmp_path) == []
