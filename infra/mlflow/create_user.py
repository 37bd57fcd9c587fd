"""Create an MLflow user through the basic-auth REST API, as the admin; an existing user is left as it is.

    MLFLOW_TRACKING_URI=http://mlflow:5000 MLFLOW_ADMIN_USERNAME=admin MLFLOW_ADMIN_PASSWORD=... \
    MLFLOW_NEW_USERNAME=yolox-worker MLFLOW_NEW_PASSWORD=... python infra/mlflow/create_user.py

The compose stack's `mlflow-init` runs it for the worker's account; tests/test_infra.py runs it against a real
server. Exit code 0 when the user exists afterwards.
"""

from __future__ import annotations

import os
import sys
import time

import requests


def create_user(uri: str, admin: tuple[str, str], username: str, password: str, wait_s: float = 120.0) -> str:
    """``created`` or ``exists``; retries while the server is starting (connection refused, 5xx)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            resp = requests.post(f"{uri.rstrip('/')}/api/2.0/mlflow/users/create", auth=admin, timeout=10,
                                 json={"username": username, "password": password})
        except requests.ConnectionError:
            resp = None
        if resp is not None and resp.status_code < 500:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"{uri}: MLflow server not answering (last: {resp and resp.status_code})")
        time.sleep(2)
    if resp.ok:
        return "created"
    if "RESOURCE_ALREADY_EXISTS" in resp.text:
        return "exists"
    raise SystemExit(f"{uri}: creating user {username!r} failed: HTTP {resp.status_code} {resp.text[:300]}")


def main() -> None:
    env = os.environ
    admin = (env.get("MLFLOW_ADMIN_USERNAME", "admin"), env["MLFLOW_ADMIN_PASSWORD"])
    status = create_user(env["MLFLOW_TRACKING_URI"], admin, env["MLFLOW_NEW_USERNAME"],
                         env["MLFLOW_NEW_PASSWORD"])
    print(f"MLflow user {env['MLFLOW_NEW_USERNAME']}: {status}")


if __name__ == "__main__":
    sys.exit(main())
