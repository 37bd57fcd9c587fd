"""Multi-node training on Kubernetes: a Kubeflow ``PyTorchJob`` (``kubeflow.org/v1``, the training
operator's elastic mode) generated from params, submitted, watched until it ends, its pods' logs streamed.

The job (``pytorchjob_manifest``): ``nodes`` worker pods (replica type ``Worker``, ``restartPolicy:
OnFailure``), each running this project's torchrun command (:func:`yolox.train.torchrun.torchrun_command`:
c10d rendezvous at ``<job>-worker-0:29400``, ``--max-restarts``) with ``nproc_per_node`` workers
(:mod:`yolox.train.worker`, the params inline as JSON); ``elasticPolicy`` tells the operator the same
(c10d, min = max = ``nodes``, ``maxRestarts``). Every pod mounts the ReadWriteMany claim ``work_pvc`` at
``/app/data`` and ``/app/runs`` (subPaths ``data`` and ``runs``) and runs in ``/app``: the relative paths
of the params (``data/prepared``, ``runs/train``) are the same files in every pod and in the flow's pod,
which reads the final checkpoint. Secrets come from ``secret_name`` (MLflow and S3 credentials), never
from params; ``MLFLOW_TRACKING_URI`` and ``AWS_ENDPOINT_URL`` are passed on from the submitting process.

The manifest is built from the Kubernetes client's and the Kubeflow training SDK's model classes (a
misspelt or missing required field fails there) and checked again by :func:`validate_manifest`, which
also checks manifests from files (``infra/k8s``): it deserializes them into those models and requires the
result to serialize back to the same document (an unknown key would be dropped, and is reported).

Elastic: a worker that dies is restarted by its pod's torchrun agent (``--max-restarts``), a pod whose
agent gives up is restarted by Kubernetes (``backoffLimit`` = ``max_restarts``), and every restart resumes
from ``<out>/last.pth`` into the same MLflow run.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from yolox.config import PipelineParams
from yolox.errors import ConfigError, LaunchError
from yolox.train.torchrun import TORCHRUN, WORKER, clear_run_state, torchrun_command

log = logging.getLogger("yolox.train")

GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "pytorchjobs", "PyTorchJob"
API_VERSION = f"{GROUP}/{VERSION}"
CONTAINER = "pytorch"            # the training operator looks for a container of this name
RDZV_PORT = 29400
WORKDIR = "/app"                 # the image's checkout (infra/Dockerfile)
WORK_MOUNTS = {"data": f"{WORKDIR}/data", "runs": f"{WORKDIR}/runs"}   # subPath of work_pvc -> mount path
SECRET_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
PASSED_ON_ENV = ("MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL")
JOB_LABEL = "training.kubeflow.org/job-name"   # set by the operator on the job's pods
RUN_AS_USER = 1000               # the image's `yolox` user
POLL_S = 5.0                     # seconds between two looks at a job's status and pods

OutputCallback = Callable[[str], None]


def job_name(output_dir: str | Path, run_id: str | None = None, now: float | None = None) -> str:
    """A DNS-1123 job name, new at each submission: ``yolox-<output folder>-<run id[:8]>-<time>`` (at most
    47 characters, so the operator's pod and service names stay under 63)."""
    stem = re.sub(r"[^a-z0-9-]+", "-", Path(output_dir).name.lower()).strip("-")[:20].strip("-") or "train"
    run = re.sub(r"[^a-z0-9]", "", (run_id or "").lower())[:8]
    stamp = format(int((time.time() if now is None else now) * 10), "x")[-9:]
    return "-".join(part for part in ("yolox", stem, run, stamp) if part)


def nproc_per_node(params: PipelineParams) -> int:
    """``train.distributed.nproc_per_node``, else the GPUs per pod, at least 1."""
    dp = params.train.distributed
    return dp.nproc_per_node or max(dp.kubernetes.gpus_per_node, 1)


def pytorchjob_manifest(params: PipelineParams, prepared_dir: str | Path, output_dir: str | Path, *, name: str,
                        run_id: str | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``PyTorchJob`` (a dict as the API takes it) that trains ``params`` on ``nodes`` pods.

    Args:
        params: ``train.distributed`` (nodes, max_restarts, kubernetes.*) and everything the workers read.
        prepared_dir, output_dir: as the pods see them (relative to ``/app``: under ``data/`` or ``runs/``).
        name: the job's name (:func:`job_name`).
        run_id: the MLflow run rank 0 logs into.
        env: environment of the pods besides the secrets (default: ``MLFLOW_TRACKING_URI`` and
            ``AWS_ENDPOINT_URL`` of this process, when set).

    Raises:
        ConfigError: a path outside the shared volume, or params the API models reject.
    """
    from kubeflow.training import models as kf
    from kubernetes import client as k

    dp, kp = params.train.distributed, params.train.distributed.kubernetes
    for what, path in (("prepared dataset", prepared_dir), ("train.output_dir", output_dir)):
        _require_shared(what, Path(path))
    nproc = nproc_per_node(params)
    worker = [*WORKER, "--params-json", json.dumps(params.model_dump(mode="json")),
              "--prepared", str(prepared_dir), "--out", str(output_dir)] + (["--run-id", run_id] if run_id else [])
    command = torchrun_command(dp, worker, rdzv_endpoint=f"{name}-worker-0:{RDZV_PORT}", rdzv_id=name,
                               nproc_per_node=nproc, torchrun=("python", "-m", TORCHRUN[-1]))
    passed = env if env is not None else {k_: os.environ[k_] for k_ in PASSED_ON_ENV if os.environ.get(k_)}
    variables = [k.V1EnvVar(name=key, value=value) for key, value in sorted(passed.items())]
    variables += [k.V1EnvVar(name="PYTHONUNBUFFERED", value="1")]
    variables += [k.V1EnvVar(name=key, value_from=k.V1EnvVarSource(
        secret_key_ref=k.V1SecretKeySelector(name=kp.secret_name, key=key))) for key in SECRET_KEYS]
    gpus = {"nvidia.com/gpu": str(kp.gpus_per_node)} if kp.gpus_per_node else {}
    try:
        container = k.V1Container(
            name=CONTAINER, image=kp.image, image_pull_policy=kp.image_pull_policy, working_dir=WORKDIR,
            command=command, env=variables,
            ports=[k.V1ContainerPort(name="pytorchjob-port", container_port=RDZV_PORT)],
            resources=k.V1ResourceRequirements(requests={"cpu": kp.cpu, "memory": kp.memory, **gpus},
                                               limits={"memory": kp.memory, **gpus}),
            volume_mounts=[k.V1VolumeMount(name="work", mount_path=mount, sub_path=sub)
                           for sub, mount in WORK_MOUNTS.items()]
            + [k.V1VolumeMount(name="dshm", mount_path="/dev/shm")],
        )
        pod = k.V1PodSpec(
            containers=[container], service_account_name=kp.service_account,
            security_context=k.V1PodSecurityContext(run_as_non_root=True, run_as_user=RUN_AS_USER,
                                                    fs_group=RUN_AS_USER),
            volumes=[k.V1Volume(name="work", persistent_volume_claim=k.V1PersistentVolumeClaimVolumeSource(
                         claim_name=kp.work_pvc)),
                     k.V1Volume(name="dshm", empty_dir=k.V1EmptyDirVolumeSource(medium="Memory",
                                                                                size_limit=kp.shm_size))],
            tolerations=[k.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")] if gpus
            else None,
        )
        labels = {"app.kubernetes.io/name": "yolox-train", "app.kubernetes.io/part-of": "yolox"}
        job = kf.KubeflowOrgV1PyTorchJob(
            api_version=API_VERSION, kind=KIND,
            metadata=k.V1ObjectMeta(name=name, namespace=kp.namespace, labels=labels,
                                    annotations={"yolox/mlflow-run-id": run_id} if run_id else None),
            spec=kf.KubeflowOrgV1PyTorchJobSpec(
                elastic_policy=kf.KubeflowOrgV1ElasticPolicy(
                    rdzv_backend="c10d", rdzv_host=f"{name}-worker-0", rdzv_port=RDZV_PORT, rdzv_id=name,
                    min_replicas=dp.nodes, max_replicas=dp.nodes, max_restarts=dp.max_restarts,
                    n_proc_per_node=nproc),
                pytorch_replica_specs={"Worker": kf.KubeflowOrgV1ReplicaSpec(
                    replicas=dp.nodes, restart_policy="OnFailure",
                    template=k.V1PodTemplateSpec(metadata=k.V1ObjectMeta(labels=labels), spec=pod))},
                run_policy=kf.KubeflowOrgV1RunPolicy(backoff_limit=dp.max_restarts, clean_pod_policy="None",
                                                     ttl_seconds_after_finished=kp.ttl_seconds_after_finished),
            ),
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(f"train.distributed.kubernetes: the PyTorchJob is not valid: {err}") from None
    manifest = _api_client().sanitize_for_serialization(job)
    validate_manifest(manifest, KIND)
    return manifest


def _require_shared(what: str, path: Path) -> None:
    rel: Path | None = path
    if path.is_absolute():
        rel = path.relative_to(WORKDIR) if path.is_relative_to(WORKDIR) else None
    if rel is None or not rel.parts or rel.parts[0] not in WORK_MOUNTS or ".." in rel.parts:
        raise ConfigError(f"{what} {path}: the pods see only the shared volume: give a path under "
                          f"{' or '.join(f'{d}/' for d in WORK_MOUNTS)} (relative to {WORKDIR})")


def _api_client(kubeflow: bool = True):
    """The Kubeflow training SDK's ApiClient (its models and the Kubernetes client's), or the Kubernetes
    client's own."""
    if kubeflow:
        from kubeflow.training.api_client import ApiClient
    else:
        from kubernetes.client import ApiClient
    return ApiClient()


class _Body:
    def __init__(self, obj: Any) -> None:
        self.data = json.dumps(obj)


def validate_manifest(manifest: dict[str, Any], model: str | None = None) -> Any:
    """Check a manifest against the API's model classes; returns the model object.

    Args:
        manifest: e.g. a ``PyTorchJob``, ``Job``, ``Service``, ``PersistentVolumeClaim`` as a dict.
        model: the model class name (``KubeflowOrgV1PyTorchJob``, ``V1Job``, ...); default from its
            ``apiVersion`` and ``kind``.

    Raises:
        ConfigError: a required field is missing, a value has the wrong type, or a key is not in the
            API (names the keys).
    """
    kind = manifest.get("kind", "?")
    klass = model if model and model != KIND else _model_name(manifest)
    client = _api_client(kubeflow=klass.startswith("KubeflowOrg"))
    try:
        obj = client.deserialize(_Body(manifest), klass)
    except (TypeError, ValueError, AttributeError) as err:
        raise ConfigError(f"{kind} {_name(manifest)}: not a valid {klass}: {err}") from None
    back = client.sanitize_for_serialization(obj)
    extra = sorted(_diff(manifest, back))
    if extra:
        raise ConfigError(f"{kind} {_name(manifest)}: not in the {klass} API (misspelt?): {', '.join(extra)}")
    return obj


def _model_name(manifest: dict[str, Any]) -> str:
    api, kind = manifest.get("apiVersion", ""), manifest.get("kind", "")
    if api == API_VERSION and kind == KIND:
        return "KubeflowOrgV1PyTorchJob"
    version = api.rpartition("/")[2]   # the client names its models by version and kind: V1Job, V1Role, ...
    return f"{version.capitalize()}{kind}"


def _name(manifest: dict[str, Any]) -> str:
    return str(manifest.get("metadata", {}).get("name", "(unnamed)"))


def _diff(given: Any, back: Any, path: str = "") -> list[str]:
    """Dotted paths present in ``given`` but lost (or changed) in ``back``."""
    if isinstance(given, dict):
        if not isinstance(back, dict):
            return [path or "(top)"]
        out = []
        for key, value in given.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in back:
                if value is not None:
                    out.append(where)
            else:
                out += _diff(value, back[key], where)
        return out
    if isinstance(given, list):
        if not isinstance(back, list) or len(back) != len(given):
            return [path]
        return [d for i, (a, b) in enumerate(zip(given, back)) for d in _diff(a, b, f"{path}[{i}]")]
    return [] if given == back or str(given) == str(back) else [path]


# ------------------------------------------------------------------------------------- submit and watch


def load_clients() -> tuple[Any, Any]:
    """(CustomObjectsApi, CoreV1Api) from the in-cluster service account, else ``~/.kube/config``.

    Raises:
        LaunchError: neither is available.
    """
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as err:
            raise LaunchError("no Kubernetes credentials: not in a cluster, and no kubeconfig "
                              f"(~/.kube/config or KUBECONFIG): {err}") from None
    return client.CustomObjectsApi(), client.CoreV1Api()


def run_pytorchjob(params: PipelineParams, prepared_dir: str | Path, output_dir: Path, *, resume: bool = False,
                   run_id: str | None = None, on_output: OutputCallback | None = None,
                   clients: tuple[Any, Any] | None = None, poll_s: float | None = None) -> dict[str, Any]:
    """Submit the ``PyTorchJob`` of :func:`pytorchjob_manifest`, stream its pods' logs, wait for its end.

    Args:
        clients: (CustomObjectsApi, CoreV1Api); default :func:`load_clients`.
        poll_s: seconds between two looks at the job's status and pods (default :data:`POLL_S`).

    Returns:
        The job's final status (``conditions``, ``replicaStatuses``, ...).

    Raises:
        LaunchError: the job could not be created, failed (its condition's message and the last log
            lines of each pod), did not start within ``pending_timeout_s`` or did not end within
            ``watch_timeout_s`` (then it is deleted); it is deleted too when the caller is interrupted.
    """
    from kubernetes.client.exceptions import ApiException

    kp = params.train.distributed.kubernetes
    say = on_output or (lambda line: log.info("%s", line))
    if not resume:
        clear_run_state(output_dir)
    name = job_name(output_dir, run_id)
    manifest = pytorchjob_manifest(params, prepared_dir, output_dir, name=name, run_id=run_id)
    custom, core = clients or load_clients()
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, kp.namespace, PLURAL, manifest)
    except ApiException as err:
        raise LaunchError(f"cannot create PyTorchJob {kp.namespace}/{name}: {err.status} {err.reason}: "
                          f"{(err.body or '')[:500]} (is the Kubeflow training operator installed, and may "
                          f"service account {kp.service_account!r} create pytorchjobs?)") from None
    say(f"submitted PyTorchJob {kp.namespace}/{name}: {params.train.distributed.nodes} pod(s) x "
        f"{nproc_per_node(params)} process(es)")
    logs = _LogStreams(core, kp.namespace, say)
    start, done = time.monotonic(), False
    try:
        while True:
            job = custom.get_namespaced_custom_object(GROUP, VERSION, kp.namespace, PLURAL, name)
            status = job.get("status") or {}
            pods = core.list_namespaced_pod(kp.namespace, label_selector=f"{JOB_LABEL}={name}").items
            logs.follow(p.metadata.name for p in pods if (p.status.phase or "") not in ("Pending", "Unknown"))
            state, message = job_state(status)
            if state in ("Succeeded", "Failed"):
                done = True
                logs.finish()
                if state == "Failed":
                    raise LaunchError(f"PyTorchJob {kp.namespace}/{name} failed: {message}\n{logs.tails()}")
                say(f"PyTorchJob {name} succeeded")
                return status
            waited = time.monotonic() - start
            if state != "Running" and waited > kp.pending_timeout_s:
                raise LaunchError(f"PyTorchJob {kp.namespace}/{name} has not started after {waited:.0f} s "
                                  f"(train.distributed.kubernetes.pending_timeout_s): {message or state}")
            if waited > kp.watch_timeout_s:
                raise LaunchError(f"PyTorchJob {kp.namespace}/{name} still {state} after {waited:.0f} s "
                                  "(train.distributed.kubernetes.watch_timeout_s): deleted")
            time.sleep(POLL_S if poll_s is None else poll_s)
    finally:
        if not done:
            logs.finish()
            _delete(custom, kp.namespace, name, say)


def job_state(status: dict[str, Any]) -> tuple[str, str]:
    """(state, message) of a training-operator job status: the last condition that is ``True``
    (``Created``, ``Running``, ``Restarting``, ``Succeeded``, ``Failed``), else ``Pending``."""
    current = [c for c in status.get("conditions") or [] if str(c.get("status")) == "True"]
    if not current:
        return "Pending", ""
    last = current[-1]
    return str(last.get("type")), str(last.get("message") or last.get("reason") or "")


def _delete(custom: Any, namespace: str, name: str, say: OutputCallback) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        say(f"deleted PyTorchJob {namespace}/{name}")
    except ApiException as err:
        log.warning("could not delete PyTorchJob %s/%s: %s %s", namespace, name, err.status, err.reason)


class _LogStreams:
    """One thread per pod following its log (``kubernetes.watch.Watch().stream`` over
    ``read_namespaced_pod_log``); lines go to ``say`` prefixed ``[pod]``, the last 20 are kept per pod."""

    def __init__(self, core: Any, namespace: str, say: OutputCallback) -> None:
        self.core, self.namespace, self.say = core, namespace, say
        self.threads: dict[str, threading.Thread] = {}
        self.last: dict[str, list[str]] = {}
        self.lock = threading.Lock()

    def follow(self, pods: Any) -> None:
        for pod in pods:
            if pod not in self.threads:
                thread = threading.Thread(target=self._stream, args=(pod,), daemon=True, name=f"log-{pod}")
                self.threads[pod] = thread
                thread.start()

    def _stream(self, pod: str) -> None:
        from kubernetes import watch

        try:
            for line in watch.Watch().stream(self.core.read_namespaced_pod_log, name=pod, namespace=self.namespace,
                                             container=CONTAINER):
                with self.lock:
                    tail = self.last.setdefault(pod, [])
                    tail.append(line)
                    del tail[:-20]
                self.say(f"[{pod}] {line}")
        except Exception as err:  # noqa: BLE001 - a log stream that breaks must not fail the watch
            log.warning("log of pod %s: %s", pod, err)

    def finish(self, timeout_s: float = 10.0) -> None:
        for thread in self.threads.values():
            thread.join(timeout_s)

    def tails(self) -> str:
        with self.lock:
            return "\n".join(f"--- last lines of {pod}:\n" + "\n".join(lines) for pod, lines in sorted(self.last.items()))
