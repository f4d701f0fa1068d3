"""A real kube-apiserver for the tests (scripts/kube/), and just enough of a
client to talk to it: JSON over HTTPS with the admin token, no dependencies.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nsqchart import ROOT

KUBE_SCRIPTS = ROOT / "scripts" / "kube"

# Kinds whose objects live outside namespaces.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def plural(kind: str) -> str:
    k = kind.lower()
    return k[:-1] + "ies" if k.endswith("y") else k + "s"


class ApiError(Exception):
    def __init__(self, status: int, body: str, what: str):
        super().__init__(f"{what}: HTTP {status}: {body}")
        self.status = status
        self.body = body


@dataclass
class ApiServer:
    dir: Path
    url: str
    token: str
    ca: Path
    kubeconfig: Path

    @classmethod
    def start(cls) -> ApiServer:
        subprocess.run([KUBE_SCRIPTS / "build-apiserver.sh"], check=True, stdin=subprocess.DEVNULL)
        d = Path(tempfile.mkdtemp(prefix="nsq-helm-test-"))
        try:
            subprocess.run([KUBE_SCRIPTS / "start-apiserver.sh", d], check=True,
                           stdin=subprocess.DEVNULL)
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise
        env = dict(
            line.split("=", 1) for line in (d / "env").read_text().splitlines() if "=" in line
        )
        return cls(dir=d, url=env["APISERVER_URL"], token=env["APISERVER_TOKEN"],
                   ca=Path(env["APISERVER_CA"]), kubeconfig=Path(env["KUBECONFIG"]))

    def stop(self) -> None:
        args = [KUBE_SCRIPTS / "stop-apiserver.sh", self.dir]
        if os.environ.get("NSQ_KUBE_KEEP") != "1":
            args.append("--purge")
        subprocess.run(args, check=False, stdin=subprocess.DEVNULL)

    # ------------------------------------------------------------- requests

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        ctx = ssl.create_default_context(cafile=str(self.ca))
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as e:
            raise ApiError(e.code, e.read().decode(), f"{method} {path}") from None
        return json.loads(text) if text else None

    def collection_path(self, api_version: str, kind: str, namespace: str | None) -> str:
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        if kind in CLUSTER_SCOPED or namespace is None:
            return f"{base}/{plural(kind)}"
        return f"{base}/namespaces/{namespace}/{plural(kind)}"

    def path_of(self, obj: dict[str, Any], namespace: str | None = None) -> str:
        ns = obj["metadata"].get("namespace", namespace)
        return (self.collection_path(obj["apiVersion"], obj["kind"], ns)
                + "/" + obj["metadata"]["name"])

    def create(self, obj: dict[str, Any], namespace: str | None = None,
               dry_run: bool = False) -> dict[str, Any]:
        ns = obj["metadata"].get("namespace", namespace)
        path = self.collection_path(obj["apiVersion"], obj["kind"], ns)
        if dry_run:
            path += "?dryRun=All"
        created: dict[str, Any] = self.request("POST", path, obj)
        return created

    def get(self, path: str) -> dict[str, Any]:
        found: dict[str, Any] = self.request("GET", path)
        return found

    def ensure_namespace(self, name: str) -> None:
        try:
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        except ApiError as e:
            if e.status != 409:
                raise

    def wait_for(self, what: str, check, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.2)
