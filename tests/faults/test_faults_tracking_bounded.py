"""Every call to a tracking server is bounded, in every command (issue 22, item 4).

Servers on loopback, each in a thread: one that accepts connections and never answers (``hang``), one that
accepts and closes at once (``close``), one that answers HTTP 503 to everything (``503``), and one that
answers the preflight's probe, then never again (``probe-then-hang``: the server dies mid-command).

- Each command that reaches the tracking server or registry (``gate``, ``promote``, ``benchmark`` of a
  ``models:/`` URI, with a ``models:/`` reference or with ``--run-id``, ``pipeline``, the Prefect flow's
  entry) fails its preflight in seconds: exit 1, stderr one line naming the URL and what to do.
- After a preflight that passed, an MLflow call is bounded by ``tracking.http_timeout_s`` x 3 attempts
  + 2.5 s (``yolox.tracking.store.bound_requests``) and ends in one line; a value the user exported wins.
- The registry names (``--version``, ``models:/`` URIs, ``gate.*_alias``, ``tracking.registered_model``,
  ``--run-id``) are checked before any request: the server sees no connection.
- The path these checks guard still works: ``models:/NAME@ALIAS`` benchmarked, its figures logged to a finished
  run that stays finished (SQLite store).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers.project_files import REPO

from yolox.config import PipelineParams
from yolox.errors import ConfigError, PreflightError
from yolox.tracking import store

BIN = Path(sys.executable).parent
PARAMS = str(REPO / "params" / "default.yaml")
PROBE = "/api/2.0/mlflow/experiments/search"
GET_MODEL = "/api/2.0/mlflow/registered-models/get"
BOUND_VARS = [*store.request_bounds(1), "YOLOX_MLFLOW_HTTP_DEFAULTS"]
FAST = ["--set", "tracking.preflight_timeout_s=1"]
RUN_ID = "0123456789abcdef0123456789abcdef"


class FakeServer:
    """A loopback TCP server speaking just enough HTTP. ``mode``: ``hang`` (accept, never answer), ``close``
    (accept, close at once), ``503`` (answer every request HTTP 503) or ``probe-then-hang`` (answer the first
    request 200 ``{}``, then read every request and answer none). ``requests``: (method, path) read so far
    (``503``, ``probe-then-hang``); ``connections``: accepted so far."""

    def __init__(self, mode: str) -> None:
        self.mode, self.requests, self.connections = mode, [], 0
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.uri = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._held.append(conn)
            self.connections += 1
            if self.mode == "close":
                conn.close()
            elif self.mode != "hang":
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        data = b""
        try:
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, data = data.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                sizes = [int(h.split(":", 1)[1]) for h in lines if h.lower().startswith("content-length:")]
                length = sizes[0] if sizes else 0
                while len(data) < length:
                    data += conn.recv(65536)
                data = data[length:]
                method, target = lines[0].split()[:2]
                with self._lock:
                    self.requests.append((method, target.split("?", 1)[0]))
                    first = len(self.requests) == 1
                if self.mode == "503":
                    self._answer(conn, "503 Service Unavailable",
                                 b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "down"}')
                elif first:
                    self._answer(conn, "200 OK", b"{}")
                # probe-then-hang: every later request read, none answered
        except OSError:
            return

    @staticmethod
    def _answer(conn: socket.socket, status: str, body: bytes) -> None:
        head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        conn.sendall(head.encode() + body)

    def close(self) -> None:
        self._sock.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def server(request: pytest.FixtureRequest) -> FakeServer:
    s = FakeServer(request.param)
    yield s
    s.close()


@pytest.fixture
def bounds_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """In-process tests: the MLFLOW_HTTP_* variables and their mark unset during the test, as before after it;
    no registry URI."""
    for var in [*BOUND_VARS, "MLFLOW_REGISTRY_URI"]:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def cli(args: list[str], uri: str, cwd: Path, extra_env: dict[str, str] | None = None,
        module: str | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    """The real ``yolox`` (or ``python -m module``) with MLFLOW_TRACKING_URI = ``uri`` and no MLFLOW_*
    variable of this process; returns the process and the seconds it took."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "YOLOX_MLFLOW"))}
    env.update({"MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true", "COLUMNS": "400",
                "PYTHONPATH": str(REPO), "PREFECT_HOME": str(cwd / "prefect"), **(extra_env or {})})
    cmd = [sys.executable, "-m", module, *args] if module else [str(BIN / "yolox"), *args]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)
    return proc, time.monotonic() - t0


def preflight_line(mode: str, uri: str, timeout: int = 1) -> str:
    """The preflight's one line (without the CLI's ``error: ``) for a server of ``mode``."""
    return f"MLflow tracking store {uri} (MLFLOW_TRACKING_URI) " + {
        "hang": f"did not answer within {timeout} s; check that the server is up and that "
                "MLFLOW_TRACKING_URI is its address, or raise tracking.preflight_timeout_s",
        "close": "is unreachable: connection lost before the answer; check the server and "
                 "MLFLOW_TRACKING_URI",
        "503": f"answered HTTP 503 to GET {PROBE}: the server is up but failing; see its log",
    }[mode]


def lost_line(uri: str, timeout: int, budget: int, problem: str | None = None) -> str:
    """:func:`yolox.tracking.store.server_lost`'s line."""
    return (f"MLflow at {uri} (MLFLOW_TRACKING_URI) stopped answering during the command: "
            f"{problem or f'no answer within {timeout} s'} (3 attempts, at most about {budget} s); start the "
            "server or point MLFLOW_TRACKING_URI at a running one, then run the command again")


# --- the preflight first, in every command ------------------------------------------------------------------

COMMANDS = {
    "gate": ["gate", "--params", PARAMS, *FAST],
    "promote": ["promote", "--params", PARAMS, "--version", "3", *FAST],
    "benchmark-models-uri": ["benchmark", "--weights", "models:/yolox-coco128/1", "--data", "no-such-data",
                             *FAST],
    "pipeline": ["pipeline", "--params", PARAMS, *FAST],
}


@pytest.mark.parametrize("server", ["hang"], indirect=True)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_command_fails_in_seconds_on_a_server_that_never_answers(command: str, server: FakeServer,
                                                                 tmp_path: Path) -> None:
    """Exit 1 in about the preflight timeout (1 s) + start-up, one line; one connection (the probe, no retry)
    and nothing written."""
    proc, seconds = cli(COMMANDS[command], server.uri, tmp_path)
    assert (proc.returncode, proc.stdout) == (1, ""), proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: " + preflight_line("hang", server.uri)]
    assert seconds < 15, f"took {seconds:.1f} s"
    assert server.connections == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("server", ["hang"], indirect=True)
def test_flow_entry_fails_before_prefect_starts(server: FakeServer, tmp_path: Path) -> None:
    """``python -m flows.train_yolox``: the preflight runs before Prefect's API server is started."""
    proc, seconds = cli([PARAMS, "tracking.preflight_timeout_s=1"], server.uri, tmp_path,
                        module="flows.train_yolox")
    assert (proc.returncode, proc.stdout) == (1, ""), proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: " + preflight_line("hang", server.uri)]
    assert seconds < 20, f"took {seconds:.1f} s"
    assert server.connections == 1 and not (tmp_path / "data").exists()


@pytest.mark.parametrize("server", ["hang", "close", "503"], indirect=True)
def test_preflight_of_each_server(server: FakeServer, bounds_env: pytest.MonkeyPatch) -> None:
    """The preflight every command runs (in process): one line per kind of server, one connection."""
    bounds_env.setenv("MLFLOW_TRACKING_URI", server.uri)
    params = PipelineParams.model_validate({"tracking": {"preflight_timeout_s": 1}})
    t0 = time.monotonic()
    with pytest.raises(PreflightError) as err:
        store.preflight(params)
    assert str(err.value) == preflight_line(server.mode, server.uri)
    assert time.monotonic() - t0 < 3
    assert server.connections == 1
    assert server.requests == ([("GET", PROBE)] if server.mode == "503" else [])


@pytest.mark.parametrize("server", ["hang"], indirect=True)
@pytest.mark.parametrize(("weights", "reference", "run_id"), [
    ("models:/yolox-coco128@champion", None, None),
    ("model.onnx", "models:/yolox-coco128/2", None),
    ("model.onnx", None, RUN_ID),
], ids=["alias", "reference", "run-id"])
def test_benchmark_preflights_whenever_it_reaches_the_server(weights: str, reference: str | None,
                                                             run_id: str | None, server: FakeServer,
                                                             bounds_env: pytest.MonkeyPatch) -> None:
    """``run_benchmark`` (what ``yolox benchmark`` calls): a registered version given as weights by alias, a
    registered reference, a run to log to: the preflight, before the dataset is read."""
    from yolox.export.benchmark import run_benchmark

    bounds_env.setenv("MLFLOW_TRACKING_URI", server.uri)
    params = PipelineParams.model_validate({"tracking": {"preflight_timeout_s": 1}})
    with pytest.raises(PreflightError) as err:
        run_benchmark(params, weights, "no-such-data", reference=reference, run_id=run_id)
    assert str(err.value) == preflight_line("hang", server.uri)


# --- after the preflight: every call bounded ---------------------------------------------------------------


@pytest.mark.parametrize("server", ["probe-then-hang"], indirect=True)
@pytest.mark.parametrize("command", ["promote", "gate"])
def test_server_dying_after_the_preflight_ends_the_command_within_the_bound(command: str, server: FakeServer,
                                                                            tmp_path: Path) -> None:
    """The preflight passes (its probe is answered), then the server answers nothing: the registry call fails
    after 3 attempts of ``tracking.http_timeout_s`` = 1 s + 2.5 s backoff at most, in one line."""
    args = COMMANDS[command] + ["--candidate-version", "1"] * (command == "gate")
    proc, seconds = cli([*args, "--set", "tracking.http_timeout_s=1"], server.uri, tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: " + lost_line(server.uri, 1, 6)]
    assert seconds < 20, f"took {seconds:.1f} s"
    assert server.requests == [("GET", PROBE)] + [("GET", GET_MODEL)] * 3


@pytest.mark.parametrize("server", ["probe-then-hang"], indirect=True)
def test_a_timeout_the_user_exported_wins_over_the_param(server: FakeServer, tmp_path: Path) -> None:
    """MLFLOW_HTTP_REQUEST_TIMEOUT=1 exported, tracking.http_timeout_s=60 in the params: 1 s per attempt (with
    the param's 60 s the command would take 3 minutes)."""
    proc, seconds = cli([*COMMANDS["promote"], "--set", "tracking.http_timeout_s=60"], server.uri, tmp_path,
                        {"MLFLOW_HTTP_REQUEST_TIMEOUT": "1"})
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: " + lost_line(server.uri, 1, 6)]
    assert seconds < 20, f"took {seconds:.1f} s"


@pytest.mark.parametrize("server", ["hang", "close", "503"], indirect=True)
def test_an_mlflow_call_fails_within_the_budget(server: FakeServer, bounds_env: pytest.MonkeyPatch) -> None:
    """Any MlflowClient call after :func:`bound_requests`: 3 attempts, then :func:`server_lost`'s line."""
    from mlflow import MlflowClient

    bounds_env.setenv("MLFLOW_TRACKING_URI", server.uri)
    assert store.bound_requests(1) == 3 * 1 + 2.5
    t0 = time.monotonic()
    with pytest.raises(Exception) as err:     # MLflow's own type; the line is checked below
        MlflowClient(tracking_uri=server.uri).search_experiments()
    seconds = time.monotonic() - t0
    problem = {"hang": None, "close": "connection lost before the answer", "503": "HTTP 503 to every attempt"}
    chain = " <- ".join(f"{type(e).__name__}: {str(e)[:300]}" for e in store._chain(err.value))
    assert str(store.server_lost(err.value)) == lost_line(server.uri, 1, 6, problem[server.mode]), chain
    assert seconds < 3 * 1 + 2.5 + 1.5, f"took {seconds:.1f} s"
    assert server.connections == 3 if server.mode != "503" else server.requests == [("POST", PROBE)] * 3
    if server.mode == "hang":
        assert seconds > 3 * 1 + 2.0 - 0.2            # 3 attempts of 1 s and a 2 s backoff: MLflow read them


def test_a_5xx_answer_mlflow_raises_from_its_body_is_a_lost_server_but_a_500_is_not(
        bounds_env: pytest.MonkeyPatch) -> None:
    """MLflow >= 3.18 raises the last 5xx answer from its body: the non-JSON form (a proxy's 502/504 page) is the
    'stopped answering' line too; MLflow's own 500 INTERNAL_ERROR (the server answered: a bug, a database error) is
    not, so the caller shows MLflow's message."""
    from mlflow.exceptions import MlflowException, RestException

    uri = "http://127.0.0.1:9"
    bounds_env.setenv("MLFLOW_TRACKING_URI", uri)
    store.bound_requests(1)
    gateway = MlflowException("API request to endpoint /api/2.0/mlflow/experiments/search failed with error code "
                              "502 != 200. Response body: '<html>Bad Gateway</html>'")
    assert str(store.server_lost(gateway)) == lost_line(uri, 1, 6, "HTTP 502 to every attempt")
    assert store.server_lost(RestException({"error_code": "INTERNAL_ERROR", "message": "db locked"})) is None
    assert store.server_lost(MlflowException("API request to endpoint /x failed with error code 500 != 200")) is None


def test_bound_requests_keeps_what_the_user_set_and_replaces_its_own(bounds_env: pytest.MonkeyPatch) -> None:
    bounds_env.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")         # the user's
    assert store.bound_requests(3) == 3 * 7 + 2.5
    assert {v: os.environ[v] for v in store.request_bounds(3)} == {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "7", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
        "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": "false"}
    bounds_env.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT")
    store.bound_requests(3)
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "3"
    assert store.bound_requests(4) == 3 * 4 + 2.5                 # ours (or a parent's, inherited): replaced
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "4"
    bounds_env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")     # the user's: MLflow's long backoffs
    assert store.bound_requests(4) == 8 * 4 + sum(min(120, 2 ** (n - 1) + 0.5) for n in range(2, 8))


@pytest.mark.parametrize(("var", "value", "form"), [
    ("MLFLOW_HTTP_REQUEST_TIMEOUT", "2.5", "a whole number of seconds >= 1"),
    ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "11", "a whole number 0..10"),
    ("MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER", "yes", "true or false"),
])
def test_bound_requests_refuses_a_value_mlflow_cannot_read(var: str, value: str, form: str,
                                                           bounds_env: pytest.MonkeyPatch) -> None:
    bounds_env.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        store.bound_requests(3)
    assert str(err.value) == (f"{var}={value!r} (set in the environment): MLflow needs {form}; fix or unset "
                              "it (unset: tracking.http_timeout_s and 2 retries apply)")


# --- names the registry accepts, before any request ---------------------------------------------------------

NAME_RULE = ("a registered model name is 1-256 characters, not all spaces, without '/' or ':', and not "
             "'.' or starting with '..' (e.g. yolox-coco128)")
ALIAS_RULE = ("an alias is 1-255 letters, digits, '_' or '-', and not 'latest' or 'v<N>' (reserved) "
              "(e.g. champion)")
URI_RULE = ("a registered model is models:/NAME/VERSION or models:/NAME@ALIAS (e.g. "
            "models:/yolox-coco128@champion)")
VERSION_RULE = "is not a model version: a version is a whole number >= 1 (e.g. 3)"


@pytest.mark.parametrize(("uri", "expected"), [
    ("models:/yolox-coco128/3", ("yolox-coco128", "version", "3")),
    ("models:/my model@champion", ("my model", "alias", "champion")),
    ("models:/m@prod_2-b", ("m", "alias", "prod_2-b")),
])
def test_models_uri_forms(uri: str, expected: tuple[str, str, str]) -> None:
    assert store.parse_models_uri(uri, "--weights") == expected


@pytest.mark.parametrize(("uri", "message"), [
    ("models:/yolox", f"'models:/yolox': {URI_RULE}"),
    ("models:/a/b/3", f"'models:/a/b/3': {URI_RULE}"),
    ("models:/m/0", f"'models:/m/0': version '0' {VERSION_RULE}"),
    ("models:/m/latest", f"'models:/m/latest': version 'latest' {VERSION_RULE}"),
    ("models:/m@v3", f"'models:/m@v3': alias 'v3' is not an alias the registry accepts: {ALIAS_RULE}"),
    ("models:/m@a.b", f"'models:/m@a.b': alias 'a.b' is not an alias the registry accepts: {ALIAS_RULE}"),
    ("models:/ /1", f"'models:/ /1': name ' ' is empty: {NAME_RULE}"),
    ("models:/..m@x", f"'models:/..m@x': name '..m' reads as a path: {NAME_RULE}"),
])
def test_models_uri_refused_naming_the_option(uri: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        store.parse_models_uri(uri, "--weights")
    assert str(err.value) == f"--weights {message}"


def test_registry_names_and_run_ids() -> None:
    assert store.check_version(" 12 ", "--version") == "12"
    assert store.check_alias("champion", "gate.champion_alias") == "champion"
    for bad in ("latest", "LATEST", "V2", "", "a b", "x" * 256):
        with pytest.raises(ConfigError, match=r"^gate.champion_alias '.*' is not an alias the registry"):
            store.check_alias(bad, "gate.champion_alias")
    for params, line in [
        ({"tracking": {"registered_model": "a:b"}},
         f"tracking.registered_model 'a:b' contains '/' or ':': {NAME_RULE}"),
        ({"gate": {"challenger_alias": "latest"}},
         f"gate.challenger_alias 'latest' is not an alias the registry accepts: {ALIAS_RULE}"),
    ]:
        with pytest.raises(ConfigError) as err:
            store.check_registry_params(PipelineParams.model_validate(params))
        assert str(err.value) == line
    assert store.check_run_id(RUN_ID, "--run-id") == RUN_ID
    with pytest.raises(ConfigError, match=r"^--run-id '-x' is not an MLflow run id: "):
        store.check_run_id("-x", "--run-id")


@pytest.mark.parametrize("server", ["hang"], indirect=True)
@pytest.mark.parametrize(("args", "line"), [
    (["promote", "--params", PARAMS, "--version", "0"], f"error: --version '0' {VERSION_RULE}"),
    (["eval", "--weights", "models:/yolox-coco128/1"],
     ("error: --weights models:/yolox-coco128/1: yolox eval takes a .pth or .onnx file, not a registered "
      "version; for the AP of one, run yolox benchmark --weights models:/NAME/VERSION (or @ALIAS)")),
], ids=["promote-version-0", "eval-models-uri"])
def test_registry_arguments_checked_before_any_request(args: list[str], line: str, server: FakeServer,
                                                       tmp_path: Path) -> None:
    proc, seconds = cli(args, server.uri, tmp_path)
    assert (proc.returncode, proc.stderr.strip().splitlines()) == (1, [line])
    assert server.connections == 0 and seconds < 15


@pytest.mark.parametrize("server", ["hang"], indirect=True)
def test_benchmark_arguments_checked_before_any_request(server: FakeServer,
                                                        bounds_env: pytest.MonkeyPatch) -> None:
    from yolox.export.benchmark import run_benchmark

    bounds_env.setenv("MLFLOW_TRACKING_URI", server.uri)
    params = PipelineParams()
    for weights, run_id, line in [
        ("models:/yolox-coco128/one", None,
         f"--weights 'models:/yolox-coco128/one': version 'one' {VERSION_RULE}"),
        ("model.onnx", "run 1",
         ("--run-id 'run 1' is not an MLflow run id: a run id is letters, digits, '_' and '-', starting with "
          "a letter or digit (e.g. 0123456789abcdef0123456789abcdef)")),
    ]:
        with pytest.raises(ConfigError) as err:
            run_benchmark(params, weights, "no-such-data", run_id=run_id)
        assert str(err.value) == line
    assert server.connections == 0


def test_benchmark_of_a_registered_alias_logs_to_a_finished_run(tmp_path: Path, coco128_dir: Path,
                                                                nano_pth: Path,
                                                                bounds_env: pytest.MonkeyPatch) -> None:
    """The working path the checks guard (SQLite store): ``models:/NAME@ALIAS`` is benchmarked as its
    registered ONNX, and ``--run-id`` of a finished run adds the figures and leaves it FINISHED."""
    from mlflow import MlflowClient

    from yolox.export.benchmark import run_benchmark
    from yolox.export.onnx_export import export_onnx
    from yolox.models.build import build_model
    from yolox.models.checkpoint import load_weights
    from yolox.models.coco_classes import COCO_CLASSES
    from yolox.registry.versions import log_and_register, registered_onnx
    from yolox.tracking.run import MlflowRun

    bounds_env.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    bounds_env.chdir(tmp_path)
    model = build_model("yolox-nano", 80)
    load_weights(model, nano_pth)
    onnx = export_onnx(model.eval(), tmp_path / "nano160.onnx", 160, COCO_CLASSES, "yolox-nano")
    run = MlflowRun("bench", "bench-run")
    sample = min((coco128_dir / "images").rglob("*.jpg"))
    version = log_and_register(run.run_id, onnx, "bench-model", sample).version
    run.end()
    params = PipelineParams.model_validate({"export": {"benchmark_warmup": 0, "benchmark_repeats": 2,
                                                       "benchmark_batch": 1}})
    result = run_benchmark(params, "models:/bench-model@challenger", str(coco128_dir), "train", max_images=2,
                           run_id=run.run_id, registered_onnx=registered_onnx)
    assert [(r.format, r.status) for r in result.rows] == [("onnx-raw", "ok")] and result.img_size == 160
    assert version == "1"
    logged = MlflowClient().get_run(run.run_id)
    assert logged.info.status == "FINISHED"
    assert logged.data.metrics["benchmark/onnx-raw/AP50_95"] == pytest.approx(result.rows[0].AP50_95)
