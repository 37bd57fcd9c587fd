"""infra/: the compose stack, the training image and the Kubernetes job template agree with the project's
settings (ports, URLs, pool, env names), and the server configuration works for real: a throwaway PostgreSQL
(Debian's binaries; .ci/run installs them) initialised by infra/postgres/init-databases.sh, then the compose
file's own `mlflow server` command (basic auth on) and `prefect server start` command against it.

No container engine runs here: hosts and ports the stack uses inside its network (postgres:5432, 0.0.0.0) are
swapped for loopback ones, the S3 artifact destination for a folder; everything else comes from the files."""

from __future__ import annotations

import configparser
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.background import Background, wait_http
from helpers.project_files import REPO

from yolox.train.torchrun import free_port

INFRA = REPO / "infra"
BIN = Path(sys.executable).parent
SERVICES = {"postgres", "minio", "minio-init", "mlflow", "mlflow-init", "prefect-server", "prefect-worker"}


# --- reading the files ------------------------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    return yaml.safe_load((INFRA / "docker-compose.yml").read_text())


def env_example() -> dict[str, str]:
    out = {}
    for line in (INFRA / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


_VAR = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$`` in strings, lists and dicts."""
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op and op.endswith("-"):
            return arg
        raise KeyError(f"{name} unset ({arg})" if op else name)

    return _VAR.sub(sub, value.replace("$$", "\0")).replace("\0", "$")


def compose_vars(compose_text: str) -> tuple[set[str], set[str]]:
    """(variables compose needs from the env file, variables with a default)."""
    required, defaulted = set(), set()
    for m in _VAR.finditer(compose_text.replace("$$", "")):
        (defaulted if m.group(2) and m.group(2).endswith("-") else required).add(m.group(1))
    return required - defaulted, defaulted


def option(cmd: list[str], flag: str) -> str:
    assert flag in cmd, f"{flag} missing from {cmd}"
    return cmd[cmd.index(flag) + 1]


def with_option(cmd: list[str], flag: str, value: str) -> list[str]:
    out = list(cmd)
    out[out.index(flag) + 1] = value
    return out


def dockerfile() -> dict[str, list[str]]:
    """Dockerfile instructions (continuation lines joined): {"FROM": [...], "USER": [...], ...}."""
    text = re.sub(r"\\\n", " ", (INFRA / "Dockerfile").read_text())
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.setdefault(word.upper(), []).append(rest.strip())
    return out


def prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())


def pools() -> set[str]:
    return {d["work_pool"]["name"] for d in prefect_yaml()["deployments"]}


# --- the files agree with each other and with the project ---------------------------------------------------


def test_compose_services_ports_and_urls_agree() -> None:
    compose = load_compose()
    services = compose["services"]
    assert SERVICES <= set(services)
    env = env_example()

    mlflow_cmd = interpolate(services["mlflow"]["command"], env)
    assert mlflow_cmd[:2] == ["mlflow", "server"]
    port = option(mlflow_cmd, "--port")
    assert f"{port}:{port}" in services["mlflow"]["ports"]
    assert option(mlflow_cmd, "--app-name") == "basic-auth"
    assert option(mlflow_cmd, "--host") == "0.0.0.0"
    backend = option(mlflow_cmd, "--backend-store-uri")
    assert backend.startswith("postgresql+psycopg2://") and "@postgres:5432/mlflow" in backend
    assert ":" not in backend.split("://")[1].split("@")[0], "the DB password belongs in PGPASSWORD, not argv"
    assert option(mlflow_cmd, "--artifacts-destination") == f"s3://{env['MLFLOW_ARTIFACTS_BUCKET']}"
    allowed = option(mlflow_cmd, "--allowed-hosts").split(",")
    assert {"mlflow", f"mlflow:{port}"} <= set(allowed)  # the Host header the worker sends

    worker = interpolate(services["prefect-worker"]["environment"], env)
    assert worker["MLFLOW_TRACKING_URI"] == f"http://mlflow:{port}"
    assert worker["MLFLOW_TRACKING_USERNAME"] == interpolate(
        services["mlflow-init"]["environment"], env)["MLFLOW_NEW_USERNAME"]

    mlflow_env = interpolate(services["mlflow"]["environment"], env)
    minio_cmd = services["minio"]["command"]
    minio_port = option(minio_cmd, "--address").lstrip(":")
    assert mlflow_env["MLFLOW_S3_ENDPOINT_URL"] == worker["AWS_ENDPOINT_URL"] == f"http://minio:{minio_port}"
    assert f"{minio_port}:{minio_port}" in services["minio"]["ports"]
    auth_ini = services["mlflow"]["volumes"][0].split(":")
    assert (INFRA / auth_ini[0]).resolve() == INFRA / "mlflow" / "basic_auth.ini"
    assert mlflow_env["MLFLOW_AUTH_CONFIG_PATH"] == auth_ini[1]
    assert mlflow_env["PGPASSWORD"] == env["MLFLOW_DB_PASSWORD"]

    prefect_cmd = services["prefect-server"]["command"]
    assert prefect_cmd[:3] == ["prefect", "server", "start"]
    pport = option(prefect_cmd, "--port")
    assert f"{pport}:{pport}" in services["prefect-server"]["ports"]
    assert worker["PREFECT_API_URL"] == f"http://prefect-server:{pport}/api"
    server_env = interpolate(services["prefect-server"]["environment"], env)
    assert server_env["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://prefect:")
    assert server_env["PREFECT_API_DATABASE_CONNECTION_URL"].endswith("@postgres:5432/prefect")
    assert server_env["PREFECT_SERVER_API_AUTH_STRING"] == worker["PREFECT_API_AUTH_STRING"]

    # the worker: prefect.yaml's pool, on a GPU, in the image's checkout
    wcmd = services["prefect-worker"]["command"]
    assert wcmd[:2] == ["python", "flows/launch_worker.py"] and option(wcmd, "--pool") in pools()
    assert option(wcmd, "--type") == "process"
    devices = services["prefect-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert worker["YOLOX_PROJECT_DIR"] == dockerfile()["WORKDIR"][-1]

    # the databases the URLs name are the ones the init script creates
    init = (INFRA / "postgres" / "init-databases.sh").read_text()
    for db in ("mlflow", "mlflow_auth", "prefect"):
        assert f"CREATE DATABASE {db} " in init
    ini = configparser.ConfigParser()
    ini.read(INFRA / "mlflow" / "basic_auth.ini")
    assert ini["mlflow"]["database_uri"].endswith("@postgres:5432/mlflow_auth")
    assert "admin_password" not in ini["mlflow"]
    mounted = services["postgres"]["volumes"][1].split(":")
    assert (INFRA / mounted[0]).resolve() == INFRA / "postgres" / "init-databases.sh"
    assert mounted[1].startswith("/docker-entrypoint-initdb.d/")
    for service, deps in {"mlflow": {"postgres", "minio-init"}, "prefect-server": {"postgres"},
                          "prefect-worker": {"prefect-server", "mlflow-init"}}.items():
        assert deps <= set(services[service]["depends_on"]), service


def test_secrets_come_from_the_env_file() -> None:
    text = (INFRA / "docker-compose.yml").read_text()
    required, _ = compose_vars(text)
    env = env_example()
    assert required <= set(env), f"not in infra/.env.example: {sorted(required - set(env))}"
    for key, value in env.items():
        if any(word in key for word in ("PASSWORD", "SECRET", "AUTH_STRING")):
            assert "change-me" in value, f"{key} in .env.example looks like a real secret"
    # no literal secret in the compose file: every password-like setting is an interpolation
    for name, service in load_compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if any(word in key for word in ("PASSWORD", "SECRET", "AUTH_STRING")):
                assert str(value).startswith("${"), f"{name}.{key} = {value!r}"
    assert "infra/.env" in (INFRA / "Dockerfile.dockerignore").read_text()


def test_dockerfile_cuda_base_non_root_user_and_worker_command() -> None:
    d = dockerfile()
    args = dict(a.split("=", 1) for a in d.get("ARG", []) if "=" in a)
    base = d["FROM"][0]
    base = args.get(base.strip("${}"), base)
    assert re.fullmatch(r"nvidia/cuda:12\.\d+(\.\d+)?-cudnn-runtime-ubuntu\d+\.\d+", base), base
    assert "python3.11" in " ".join(d["RUN"])
    user = d["USER"][-1]
    assert user not in ("root", "0") and not user.startswith("0:"), user
    assert any("useradd" in r and user in r for r in d["RUN"])
    cmd = json.loads(d["CMD"][-1])
    assert cmd[:2] == ["python", "flows/launch_worker.py"] and option(cmd, "--pool") in pools()
    assert "tini" in d["ENTRYPOINT"][-1]
    assert (REPO / cmd[1]).is_file()
    env = " ".join(d["ENV"])
    assert "YOLOX_PROJECT_DIR=/app" in env and d["WORKDIR"][-1] == "/app"
    # the pull step of prefect.yaml resolves to the image's checkout
    assert prefect_yaml()["pull"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == \
        "{{ $YOLOX_PROJECT_DIR }}"
    # the compose services that run Python use this image
    for name in ("mlflow", "mlflow-init", "prefect-server", "prefect-worker"):
        assert load_compose()["services"][name]["build"]["dockerfile"] == "infra/Dockerfile", name


def test_dockerfile_installs_the_tensorrt_extra_for_its_cuda() -> None:
    """The image can build engines (issue 26): it installs the project with the ``tensorrt`` extra, whose
    TensorRT wheels are those of the base image's CUDA major version (``tensorrt-cu12`` on
    ``nvidia/cuda:12.x``) and of the TensorRT major version ``yolox/export/tensorrt.py`` is written against,
    without pycuda (device buffers are torch CUDA tensors); torch's wheels come from the index of the same
    CUDA."""
    import tomllib

    from packaging.requirements import Requirement

    from yolox.export.tensorrt import MIN_TENSORRT

    d = dockerfile()
    args = dict(a.split("=", 1) for a in d.get("ARG", []) if "=" in a)
    base = d["FROM"][0]
    cuda = re.fullmatch(r"nvidia/cuda:(\d+)\.\d+.*", args.get(base.strip("${}"), base))
    assert cuda, base
    installed = [m.group(1) for run in d["RUN"]
                 for m in re.finditer(r"pip install(?:\s+-\S+)*\s+-e\s+['\"]?\.(\[[^\]]*\])?['\"]?", run)]
    assert [extras for extras in installed if extras] == ["[tensorrt]"], installed
    extra = [Requirement(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["tensorrt"]]
    by_name = {r.name.lower(): r for r in extra}
    assert "pycuda" not in by_name, sorted(by_name)
    assert "tensorrt" not in by_name, sorted(by_name)   # not the meta wheel, which picks a CUDA by itself
    wheel = by_name[f"tensorrt-cu{cuda.group(1)}"]
    assert wheel.specifier.contains(f"{MIN_TENSORRT}.8.0")
    assert not wheel.specifier.contains(f"{MIN_TENSORRT + 1}.0.0")
    assert re.search(rf"/cu{cuda.group(1)}\d$", args["TORCH_INDEX_URL"]), args["TORCH_INDEX_URL"]


def test_k8s_job_template_renders_the_flow_pod() -> None:
    """The Prefect Kubernetes pool's template: one pod running the flow run, the shared volume, secrets by
    reference. Multi-node training is a PyTorchJob the flow's train task submits (tests/train/test_k8s.py)."""
    from prefect.utilities.templating import apply_values, find_placeholders

    template = yaml.safe_load((INFRA / "k8s" / "train-job.yaml").read_text())
    variables = template["variables"]["properties"]
    used = {p.name for p in find_placeholders(json.dumps(template["job_configuration"]))}
    assert used <= set(variables), f"undeclared: {used - set(variables)}"

    values = {k: v["default"] for k, v in variables.items() if "default" in v}
    values.update(name="train-yolox-abc", gpus_per_node=8, command="prefect flow-run execute",
                  labels={"prefect.io/flow-run-id": "abc"})
    config = apply_values(template["job_configuration"], values)
    job = config["job_manifest"]
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    spec = job["spec"]
    assert "completionMode" not in spec and spec["backoffLimit"] == 0
    pod = spec["template"]["spec"]
    # what Prefect's Kubernetes worker insists on
    assert pod["restartPolicy"] == "Never" and pod["parallelism"] == pod["completions"] == 1
    container = pod["containers"][0]
    assert container["name"] == "prefect-job" and container["args"] == "prefect flow-run execute"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert "{{" not in json.dumps(config), "a placeholder was left unrendered"
    env_names = {e["name"] for e in container["env"]}
    assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= env_names
    assert values["env"]["YOLOX_PROJECT_DIR"] == "/app"
    assert values["env"]["MLFLOW_TRACKING_URI"].endswith(":5000")

    # the cluster objects it names exist in infra/k8s/cluster.yaml
    objs = {(o["kind"], o["metadata"]["name"]): o
            for o in yaml.safe_load_all((INFRA / "k8s" / "cluster.yaml").read_text())}
    assert objs[("PersistentVolumeClaim", values["work_pvc"])]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert ("ServiceAccount", values["service_account_name"]) in objs
    assert ("Namespace", values["namespace"]) in objs


# --- a real PostgreSQL, and the servers on it -------------------------------------------------------------


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A throwaway PostgreSQL on 127.0.0.1:<free port>, initialised by infra/postgres/init-databases.sh.

    As root (initdb refuses root) the server runs as the ``postgres`` user through ``runuser``, in a
    directory of its own under the system temp folder (pytest's is private to root)."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin): "
                    "apt-get install postgresql (.ci/run does)")
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            pg_user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run PostgreSQL as")
        if not shutil.which("runuser"):
            pytest.skip("running as root without `runuser` to start PostgreSQL as `postgres`")
        as_user = ["runuser", "-u", "postgres", "--"]
        root = Path(tempfile.mkdtemp(prefix="yolox-pg-"))
        os.chown(root, pg_user.pw_uid, pg_user.pw_gid)
    else:
        root = tmp_path_factory.mktemp("pg")
    superpw = secrets.token_urlsafe(16)
    (root / "pw").write_text(superpw + "\n")
    if as_user:
        os.chown(root / "pw", pg_user.pw_uid, pg_user.pw_gid)
    port = free_port()
    data = root / "data"

    def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw, check=False)
        assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    try:
        run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={root / 'pw'}",
             "--auth=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync"])
        opts = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "postgres.log"), "-o", opts,
             "-w", "-t", "60", "start"])
        info = {"host": "127.0.0.1", "port": port, "superpw": superpw,
                "mlflow_pw": secrets.token_urlsafe(16), "prefect_pw": secrets.token_urlsafe(16)}
        # the compose stack's init script, as the postgres image would run it
        run(["sh", str(INFRA / "postgres" / "init-databases.sh")], env={
            **os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "PGHOST": "127.0.0.1",
            "PGPORT": str(port), "PGPASSWORD": superpw, "POSTGRES_USER": "postgres",
            "MLFLOW_DB_PASSWORD": info["mlflow_pw"], "PREFECT_DB_PASSWORD": info["prefect_pw"]})
        yield info
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "30",
                            "stop"], capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)


def sql(pg: dict[str, Any], db: str, user: str, password: str, query: str) -> list[tuple]:
    import psycopg2

    conn = psycopg2.connect(host=pg["host"], port=pg["port"], dbname=db, user=user, password=password)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchall()
    finally:
        conn.close()


def stack_env(pg: dict[str, Any]) -> dict[str, str]:
    """infra/.env for this test: .env.example's names, fresh secrets, the throwaway database's passwords."""
    env = env_example()
    for key in env:
        if any(word in key for word in ("PASSWORD", "SECRET")):
            env[key] = secrets.token_urlsafe(18)
    env.update(MLFLOW_DB_PASSWORD=pg["mlflow_pw"], PREFECT_DB_PASSWORD=pg["prefect_pw"],
               PREFECT_AUTH_STRING=f"admin:{secrets.token_urlsafe(12)}")
    return env


def loopback(value: str, pg: dict[str, Any]) -> str:
    return value.replace("@postgres:5432/", f"@{pg['host']}:{pg['port']}/")


@pytest.mark.slow
def test_mlflow_server_from_compose_on_postgres(postgres: dict[str, Any], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    env = stack_env(postgres)
    service = load_compose()["services"]["mlflow"]
    port = free_port()
    cmd = interpolate(service["command"], env)
    cmd = with_option(cmd, "--backend-store-uri", loopback(option(cmd, "--backend-store-uri"), postgres))
    cmd = with_option(cmd, "--artifacts-destination", str(tmp_path / "artifacts"))  # s3:// needs MinIO
    cmd = with_option(with_option(cmd, "--host", "127.0.0.1"), "--port", str(port))
    cmd = with_option(cmd, "--workers", "1")
    ini = (INFRA / "mlflow" / "basic_auth.ini").read_text()
    (tmp_path / "basic_auth.ini").write_text(loopback(ini, postgres))
    server_env = {**os.environ, **interpolate(service["environment"], env),
                  "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "basic_auth.ini")}
    print("mlflow command:", " ".join(cmd))
    server = Background("mlflow", [str(BIN / cmd[0]), *cmd[1:]], tmp_path, server_env, tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        print(f"mlflow server up in {wait_http(f'{url}/health', server, timeout=150):.1f} s")
        admin = ("admin", env["MLFLOW_ADMIN_PASSWORD"])
        search = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
        assert httpx.get(search, timeout=10).status_code == 401                       # auth is on
        assert httpx.get(search, auth=admin, timeout=10).status_code == 200
        assert httpx.get(search, auth=admin, headers={"Host": "mlflow:5000"}, timeout=10).status_code == 200
        assert httpx.get(search, auth=admin, headers={"Host": "evil.example"}, timeout=10).status_code == 403

        # mlflow-init: the worker's account, created by the compose file's own script
        init_env = {**os.environ, "MLFLOW_TRACKING_URI": url,
                    **{k: v for k, v in interpolate(load_compose()["services"]["mlflow-init"]["environment"],
                                                    env).items() if k != "MLFLOW_TRACKING_URI"}}
        out = subprocess.run([sys.executable, str(INFRA / "mlflow" / "create_user.py")], env=init_env,
                             capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode == 0 and "created" in out.stdout, out.stdout + out.stderr
        again = subprocess.run([sys.executable, str(INFRA / "mlflow" / "create_user.py")], env=init_env,
                               capture_output=True, text=True, timeout=120, check=False)
        assert again.returncode == 0 and "exists" in again.stdout, again.stdout + again.stderr

        # a run logged the way the pipeline logs it (yolox.tracking), as the worker, in a fresh process
        worker = interpolate(load_compose()["services"]["prefect-worker"]["environment"], env)
        client_env = {**os.environ, "MLFLOW_TRACKING_URI": url,
                      "MLFLOW_TRACKING_USERNAME": worker["MLFLOW_TRACKING_USERNAME"],
                      "MLFLOW_TRACKING_PASSWORD": worker["MLFLOW_TRACKING_PASSWORD"]}
        (tmp_path / "report.json").write_text('{"skipped_images": 0}')
        script = f"""
import json
from yolox.tracking.run import MlflowRun
run = MlflowRun("infra-check", "postgres-run", {{"data_version": "0123456789abcdef.dir"}})
run.log_params({{"train.epochs": 3, "model.name": "yolox-nano"}})
for epoch in (1, 2, 3):
    run.log_metrics({{"train/total_loss": 4.0 / epoch}}, step=epoch)
run.log_metrics({{"eval/AP50_95": 0.41}})
run.log_artifact({str(tmp_path / "report.json")!r}, "data")
run.end("FINISHED")
print(json.dumps({{"run_id": run.run_id}}))
"""
        proc = subprocess.run([sys.executable, "-c", script], env=client_env, capture_output=True, text=True,
                              timeout=180, cwd=tmp_path, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        run_id = json.loads(proc.stdout.strip().splitlines()[-1])["run_id"]

        from mlflow import MlflowClient

        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.setenv(key, client_env[key])
        client = MlflowClient(tracking_uri=url, registry_uri=url)
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.info.run_name == "postgres-run"
        assert run.data.params == {"train.epochs": "3", "model.name": "yolox-nano"}
        assert run.data.tags["data_version"] == "0123456789abcdef.dir"
        assert [(m.step, m.value) for m in client.get_metric_history(run_id, "train/total_loss")] == [
            (1, 4.0), (2, 2.0), (3, 4.0 / 3)]
        assert run.data.metrics["eval/AP50_95"] == pytest.approx(0.41)
        local = client.download_artifacts(run_id, "data/report.json", str(tmp_path / "dl"))
        assert json.loads(Path(local).read_text()) == {"skipped_images": 0}
        assert (tmp_path / "artifacts").is_dir()  # proxied: the server, not the client, wrote the file
        # the registry and aliases on PostgreSQL
        client.create_registered_model("yolox-infra-check")
        mv = client.create_model_version("yolox-infra-check", f"runs:/{run_id}/data", run_id=run_id)
        client.set_registered_model_alias("yolox-infra-check", "champion", mv.version)
        assert client.get_model_version_by_alias("yolox-infra-check", "champion").run_id == run_id

        # and it is all in PostgreSQL
        rows = sql(postgres, "mlflow", "mlflow", postgres["mlflow_pw"],
                   f"SELECT status FROM runs WHERE run_uuid = '{run_id}'")
        assert rows == [("FINISHED",)]
        users = {r[0] for r in sql(postgres, "mlflow_auth", "mlflow", postgres["mlflow_pw"],
                                   "SELECT username FROM users")}
        assert users == {"admin", worker["MLFLOW_TRACKING_USERNAME"]}
        print(json.dumps({"run_id": run_id, "registered": f"yolox-infra-check/{mv.version}@champion",
                          "mlflow_auth.users": sorted(users)}))
    finally:
        server.stop(20)
        print(f"{server.name} stopped by {server.stopped_by}")


@pytest.mark.slow
def test_prefect_server_from_compose_on_postgres(postgres: dict[str, Any], tmp_path: Path) -> None:
    import httpx

    env = stack_env(postgres)
    service = load_compose()["services"]["prefect-server"]
    port = free_port()
    cmd = with_option(with_option(interpolate(service["command"], env), "--host", "127.0.0.1"),
                      "--port", str(port))
    server_env = interpolate(service["environment"], env)
    server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = loopback(
        server_env["PREFECT_API_DATABASE_CONNECTION_URL"], postgres)
    server_env.update(PREFECT_HOME=str(tmp_path / "server-home"), PREFECT_UI_ENABLED="false")
    server = Background("prefect-server", [str(BIN / cmd[0]), *cmd[1:]], tmp_path,
                        {**os.environ, **server_env}, tmp_path)
    api = f"http://127.0.0.1:{port}/api"
    worker = interpolate(load_compose()["services"]["prefect-worker"]["environment"], env)
    client_env = {**os.environ, "PREFECT_API_URL": api,
                  "PREFECT_API_AUTH_STRING": worker["PREFECT_API_AUTH_STRING"],
                  "PREFECT_HOME": str(tmp_path / "client-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}

    def prefect(*args: str) -> str:
        proc = subprocess.run([str(BIN / "prefect"), *args], env=client_env, capture_output=True, text=True,
                              timeout=120, cwd=tmp_path, check=False)
        assert proc.returncode == 0, f"prefect {args}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    try:
        print(f"prefect server up in {wait_http(f'{api}/health', server, timeout=150):.1f} s")
        assert httpx.post(f"{api}/work_pools/filter", json={}, timeout=10).status_code == 401   # auth is on
        pool = min(pools())
        prefect("work-pool", "create", pool, "--type", "process")
        # the Kubernetes pool from infra/k8s/train-job.yaml: the server validates the template's placeholders
        template = yaml.safe_load((INFRA / "k8s" / "train-job.yaml").read_text())
        (tmp_path / "k8s.json").write_text(json.dumps(template))
        prefect("work-pool", "create", "yolox-k8s", "--type", "kubernetes", "--base-job-template",
                str(tmp_path / "k8s.json"))
        user, password = worker["PREFECT_API_AUTH_STRING"].split(":", 1)
        listed = httpx.post(f"{api}/work_pools/filter", json={}, auth=(user, password), timeout=10).json()
        by_name = {p["name"]: p for p in listed}
        assert by_name[pool]["type"] == "process" and by_name["yolox-k8s"]["type"] == "kubernetes"
        assert by_name["yolox-k8s"]["base_job_template"]["variables"]["properties"]["gpus_per_node"]["default"] == 1
        rows = sql(postgres, "prefect", "prefect", postgres["prefect_pw"], "SELECT name, type FROM work_pool")
        assert {(pool, "process"), ("yolox-k8s", "kubernetes")} <= set(rows)
        print(json.dumps({"prefect work_pool rows": sorted(rows)}))
    finally:
        server.stop(20)
        print(f"{server.name} stopped by {server.stopped_by}")
