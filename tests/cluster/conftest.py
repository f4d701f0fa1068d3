"""The chart on a real single-node cluster (scripts/cluster): fixtures.

The cluster is brought up by scripts/test-cluster (or by hand with
`scripts/cluster up`); these tests find it through its kubeconfig."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "helm"))

CLUSTER_DIR = Path(os.environ.get("NSQ_CLUSTER_DIR", "/var/tmp/nsq-cluster"))
CACHE = Path(os.environ.get("NSQ_KUBE_CACHE", Path.home() / ".cache" / "nsq-kube"))
KUBECONFIG = CLUSTER_DIR / "kubeconfig"
NAMESPACE = "nsq"
RELEASE = "nsq"


class Kubectl:
    def __init__(self, kubeconfig: Path):
        self.kubeconfig = kubeconfig

    def run(self, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(CACHE / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {r.stderr.strip()}")
        return r

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def pods(self, selector: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
        return self.json("get", "pods", "-n", namespace, "-l", selector)["items"]


def ready(pod: dict[str, Any]) -> bool:
    conds = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def wait_until(what: str, timeout: float, check, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as e:  # noqa: BLE001 - kept for the failure message
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


@pytest.fixture(scope="session")
def kubectl() -> Kubectl:
    if not KUBECONFIG.exists():
        pytest.fail(f"no cluster: {KUBECONFIG} is missing (run scripts/cluster up)")
    return Kubectl(KUBECONFIG)
