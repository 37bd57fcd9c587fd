"""Multi-node on Kubernetes (issue 12 item 1) without a cluster: the PyTorchJob generated from params is
checked against the API's model classes (Kubernetes client, Kubeflow training SDK), and the submit/watch
code runs against a fake of the Kubernetes API at the client boundary (``CustomObjectsApi`` and
``CoreV1Api`` methods, answering with the client's own model classes and a log stream the client's
``watch`` reads).

The end-to-end test's fake cluster runs each worker pod's command for real, as a local process (the
job's rendezvous host ``<job>-worker-0`` resolved to 127.0.0.1, as the cluster's DNS would), in a folder
standing for the pods' ``/app`` with the shared volume: what the pods run trains.

What is not run here: a real API server, the training operator, GPUs, image pulls, the shared volume.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.project_files import REPO
from helpers.train import checkpoint, prepare_subset, tiny_params
from kubernetes.client import CoreV1Api, V1ObjectMeta, V1Pod, V1PodList, V1PodStatus
from kubernetes.client.exceptions import ApiException

from yolox.config import PipelineParams
from yolox.errors import ConfigError, LaunchError
from yolox.train import k8s
from yolox.train.k8s import JOB_LABEL, job_name, pytorchjob_manifest, run_pytorchjob, validate_manifest
from yolox.train.torchrun import free_port


def k8s_params(**distributed: Any) -> PipelineParams:
    params = PipelineParams()
    params.train.distributed = params.train.distributed.model_validate(
        {"launcher": "kubernetes", "nodes": 4, **distributed})
    return params


class FakeLog:
    """What ``read_namespaced_pod_log(..., _preload_content=False)`` returns: a urllib3-like response."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def stream(self, amt: Any = None, decode_content: bool = False):
        for line in self.lines:
            yield (line + "\n").encode()

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class FakeCluster:
    """``CustomObjectsApi`` + ``CoreV1Api`` of a cluster with the training operator: a job goes through
    ``statuses`` (one per look), its pods run once it is Running; ``run_pods`` runs the pods' commands."""

    def __init__(self, statuses: list[dict], logs: dict[int, list[str]] | None = None, run_pods: Path | None = None):
        self.statuses, self.logs, self.run_pods = statuses, logs or {}, run_pods
        self.created: list[dict] = []
        self.deleted: list[str] = []
        self.looks = 0
        self.procs: list[subprocess.Popen] = []
        self.pod_output: dict[str, list[str]] = {}

    # CustomObjectsApi
    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        assert (group, version, plural) == ("kubeflow.org", "v1", "pytorchjobs")
        assert namespace == body["metadata"]["namespace"]
        if any(j["metadata"]["name"] == body["metadata"]["name"] for j in self.created):
            raise ApiException(status=409, reason="AlreadyExists")
        self.created.append(copy.deepcopy(body))
        if self.run_pods is not None:
            self._start_pods(body)

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        assert self.created and name == self.created[-1]["metadata"]["name"]
        if self.run_pods is not None:
            return {**self.created[-1], "status": self._pods_status()}
        status = self.statuses[min(self.looks, len(self.statuses) - 1)]
        self.looks += 1
        return {**self.created[-1], "status": status}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.deleted.append(name)

    # CoreV1Api
    def list_namespaced_pod(self, namespace, label_selector=None):
        name = self.created[-1]["metadata"]["name"]
        assert label_selector == f"{JOB_LABEL}={name}"
        replicas = self.created[-1]["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"]
        running = self.run_pods is not None or self.looks > 1
        return V1PodList(items=[V1Pod(metadata=V1ObjectMeta(name=f"{name}-worker-{i}", labels={JOB_LABEL: name}),
                                      status=V1PodStatus(phase="Running" if running else "Pending"))
                                for i in range(replicas)])

    def read_namespaced_pod_log(self, name, namespace, **kwargs):
        assert kwargs.get("follow") is True and kwargs.get("_preload_content") is False
        assert kwargs.get("container") == "pytorch"
        index = int(name.rsplit("-", 1)[1])
        if self.run_pods is not None:
            self.procs[index].wait(timeout=300)
            return FakeLog(self.pod_output[name])
        return FakeLog(self.logs.get(index, []))

    read_namespaced_pod_log.__doc__ = CoreV1Api.read_namespaced_pod_log.__doc__   # what watch() reads

    # the pods, run for real
    def _start_pods(self, body: dict) -> None:
        name = body["metadata"]["name"]
        spec = body["spec"]["pytorchReplicaSpecs"]["Worker"]
        container = spec["template"]["spec"]["containers"][0]
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "MASTER_", "MLFLOW_"))}
        env.update({e["name"]: e["value"] for e in container["env"] if "value" in e})
        env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        for i in range(spec["replicas"]):
            cmd = [sys.executable if a == "python" else a for a in container["command"]]
            cmd = [a.replace(f"{name}-worker-0:{k8s.RDZV_PORT}", f"127.0.0.1:{port}") for a in cmd]
            pod = f"{name}-worker-{i}"
            proc = subprocess.Popen(cmd, cwd=self.run_pods, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            self.procs.append(proc)
            self.pod_output[pod] = []
            threading.Thread(target=lambda p=proc, out=self.pod_output[pod]: out.extend(
                line.rstrip("\n") for line in p.stdout), daemon=True).start()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def _pods_status(self) -> dict:
        codes = [p.poll() for p in self.procs]
        if any(c not in (None, 0) for c in codes):
            return {"conditions": [{"type": "Failed", "status": "True", "message": f"pod exit codes {codes}"}]}
        if all(c == 0 for c in codes):
            return {"conditions": [{"type": "Running", "status": "False"},
                                   {"type": "Succeeded", "status": "True", "message": "done"}]}
        return {"conditions": [{"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}]}


RUNNING = {"conditions": [{"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}]}
SUCCEEDED = {"conditions": [{"type": "Created", "status": "True"}, {"type": "Running", "status": "False"},
                            {"type": "Succeeded", "status": "True", "message": "PyTorchJob succeeded"}]}
FAILED = {"conditions": [{"type": "Running", "status": "False"},
                         {"type": "Failed", "status": "True", "message": "Worker 1 exited with code 137"}]}


def test_manifest_from_params_is_a_valid_elastic_pytorchjob(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.yolox.svc:5000")
    params = k8s_params(max_restarts=5, kubernetes={"gpus_per_node": 8, "image": "reg.example/yolox:1"})
    name = job_name("runs/train", "0123456789abcdef", now=1.7e9)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 47
    job = pytorchjob_manifest(params, "data/prepared", "runs/train", name=name, run_id="0123456789abcdef")
    model = validate_manifest(job)
    assert type(model).__name__ == "KubeflowOrgV1PyTorchJob"
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "PyTorchJob"
    spec = job["spec"]
    assert spec["elasticPolicy"] == {"rdzvBackend": "c10d", "rdzvHost": f"{name}-worker-0", "rdzvPort": 29400,
                                     "rdzvId": name, "minReplicas": 4, "maxReplicas": 4, "maxRestarts": 5,
                                     "nProcPerNode": 8}
    worker = spec["pytorchReplicaSpecs"]["Worker"]
    assert set(spec["pytorchReplicaSpecs"]) == {"Worker"} and worker["replicas"] == 4
    assert worker["restartPolicy"] == "OnFailure" and spec["runPolicy"]["backoffLimit"] == 5
    pod = worker["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "pytorch" and container["image"] == "reg.example/yolox:1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    cmd = container["command"]
    assert cmd[:3] == ["python", "-m", "yolox.train.agent"]
    assert cmd[cmd.index("--nnodes") + 1] == "4" and cmd[cmd.index("--nproc-per-node") + 1] == "8"
    assert cmd[cmd.index("--rdzv-endpoint") + 1] == f"{name}-worker-0:29400"
    assert cmd[cmd.index("--max-restarts") + 1] == "5"
    sent = json.loads(cmd[cmd.index("--params-json") + 1])
    assert PipelineParams.model_validate(sent) == params          # the workers train these params
    assert cmd[cmd.index("--run-id") + 1] == "0123456789abcdef"
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.yolox.svc:5000"
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "yolox-secrets",
                                                                             "key": "MLFLOW_TRACKING_PASSWORD"}
    credentials = [e for n, e in env.items() if "PASSWORD" in n or "SECRET" in n or "KEY" in n]
    assert len(credentials) == 3 and all("value" not in e for e in credentials)   # only secret references
    mounts = {m["mountPath"]: m.get("subPath") for m in container["volumeMounts"]}
    assert mounts["/app/data"] == "data" and mounts["/app/runs"] == "runs" and container["workingDir"] == "/app"
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "yolox-work"
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_manifest_validation_rejects_what_the_api_would() -> None:
    job = pytorchjob_manifest(k8s_params(), "data/prepared", "runs/train", name="yolox-train-x")
    bad = copy.deepcopy(job)
    bad["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(ConfigError, match=r"containers\[0\]\.imagePullPolcy"):
        validate_manifest(bad)
    bad = copy.deepcopy(job)
    del bad["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(ConfigError, match="name"):
        validate_manifest(bad)
    with pytest.raises(ConfigError, match="shared volume"):
        pytorchjob_manifest(k8s_params(), "/datasets/prepared", "runs/train", name="yolox-train-x")
    with pytest.raises(ConfigError, match="shared volume"):
        pytorchjob_manifest(k8s_params(), "data/prepared", "../elsewhere", name="yolox-train-x")


def test_submit_watch_stream_logs_and_succeed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cluster = FakeCluster([{}, RUNNING, RUNNING, SUCCEEDED],
                          logs={0: ["rank0 epoch 1/2", "rank0 epoch 2/2"], 1: ["rank1 ready"]})
    lines: list[str] = []
    status = run_pytorchjob(k8s_params(nodes=2), "data/prepared", Path("runs/train"), run_id="abc",
                            on_output=lines.append, clients=(cluster, cluster), poll_s=0.01)
    assert status == SUCCEEDED and cluster.deleted == []
    (job,) = cluster.created
    validate_manifest(job)
    name = job["metadata"]["name"]
    assert lines[0].startswith(f"submitted PyTorchJob yolox/{name}: 2 pod(s)")
    assert f"[{name}-worker-0] rank0 epoch 2/2" in lines and f"[{name}-worker-1] rank1 ready" in lines
    assert lines[-1] == f"PyTorchJob {name} succeeded"


def test_a_failed_job_raises_with_its_reason_and_the_pods_last_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cluster = FakeCluster([RUNNING, RUNNING, FAILED], logs={1: ["rank1 Traceback", "RuntimeError: boom"]})
    with pytest.raises(LaunchError, match="exited with code 137") as err:
        run_pytorchjob(k8s_params(nodes=2), "data/prepared", Path("runs/train"),
                       clients=(cluster, cluster), poll_s=0.01)
    assert "RuntimeError: boom" in str(err.value) and cluster.deleted == []   # kept for kubectl describe


def test_a_job_that_never_starts_is_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cluster = FakeCluster([{}])
    params = k8s_params(kubernetes={"pending_timeout_s": 0.05})
    with pytest.raises(LaunchError, match="has not started"):
        run_pytorchjob(params, "data/prepared", Path("runs/train"), clients=(cluster, cluster),
                       poll_s=0.01)
    assert cluster.deleted == [cluster.created[0]["metadata"]["name"]]


def test_launch_training_on_a_fake_cluster_trains_for_real(coco128_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from yolox.train.launch import launch_training

    app = tmp_path / "app"                                  # the pods' /app: shared data/ and runs/
    prepare_subset(coco128_dir, app / "data")
    cluster = FakeCluster([], run_pods=app)
    monkeypatch.setattr(k8s, "load_clients", lambda: (cluster, cluster))
    monkeypatch.setattr(k8s, "POLL_S", 0.2)
    monkeypatch.chdir(app)
    params = tiny_params(epochs=2, no_aug_epochs=1, max_iters_per_epoch=2, batch_size=4)
    params.train.distributed = params.train.distributed.model_validate(
        {"launcher": "kubernetes", "nodes": 2, "nproc_per_node": 1, "kubernetes": {"gpus_per_node": 0}})
    lines: list[str] = []
    try:
        result = launch_training(params, "data/prepared", "runs/train", on_output=lines.append)
    finally:
        cluster.stop()
    for proc in cluster.procs:
        assert proc.returncode == 0
    assert result.epochs == 2 and result.checkpoint == Path("runs/train/last.pth")
    state = checkpoint(app / "runs" / "train" / "last.pth")
    assert state["world_size"] == 2 and state["iteration"] == 4
    assert any("rank0 INFO epoch 2/2" in line for line in lines), lines[-20:]
    (job,) = cluster.created
    pod = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"] and not pod.get("tolerations")


def test_cluster_yaml_and_flow_job_template_agree_with_the_launcher() -> None:
    """infra/k8s/cluster.yaml validates against the client's models and names what the PyTorchJob uses;
    the flow pod's job template mounts the same volume at the same paths, with the same defaults."""
    from prefect.utilities.templating import apply_values

    kp = PipelineParams().train.distributed.kubernetes
    objects = list(yaml.safe_load_all((REPO / "infra" / "k8s" / "cluster.yaml").read_text()))
    by_kind = {}
    for obj in objects:
        validate_manifest(obj)
        by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
    assert kp.namespace in by_kind["Namespace"] and kp.work_pvc in by_kind["PersistentVolumeClaim"]
    assert by_kind["PersistentVolumeClaim"][kp.work_pvc]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert kp.service_account in by_kind["ServiceAccount"]
    (role,) = by_kind["Role"].values()
    rules = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert {"create", "get", "delete"} <= rules[("kubeflow.org", "pytorchjobs")]
    assert {"list"} <= rules[("", "pods")] and {"get"} <= rules[("", "pods/log")]
    (binding,) = by_kind["RoleBinding"].values()
    assert binding["subjects"][0]["name"] == kp.service_account and binding["roleRef"]["name"] == role["metadata"]["name"]

    template = yaml.safe_load((REPO / "infra" / "k8s" / "train-job.yaml").read_text())
    variables = template["variables"]["properties"]
    defaults = {k: v["default"] for k, v in variables.items() if "default" in v}
    assert defaults["namespace"] == kp.namespace and defaults["work_pvc"] == kp.work_pvc
    assert defaults["secret_name"] == kp.secret_name and defaults["service_account_name"] == kp.service_account
    assert defaults["image"] == kp.image
    values = {**defaults, "name": "train-yolox-abc", "command": "prepare flow-run execute", "labels": {}}
    job = apply_values(template["job_configuration"], values)["job_manifest"]
    pod = job["spec"]["template"]["spec"]
    assert pod.pop("parallelism") == pod.pop("completions") == 1   # Prefect's quirk, not Kubernetes API
    pod["containers"][0]["args"] = shlex.split(pod["containers"][0]["args"])   # as Prefect's worker sends it
    validate_manifest(job)                                   # a batch/v1 Job of the client's V1Job model
    (container,) = job["spec"]["template"]["spec"]["containers"]
    mounts = {m["mountPath"]: m.get("subPath") for m in container["volumeMounts"]}
    assert {mount: sub for sub, mount in k8s.WORK_MOUNTS.items()}.items() <= mounts.items()
    assert container["workingDir"] == k8s.WORKDIR
