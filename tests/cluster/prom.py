"""Prometheus (Debian's package) scraping the cluster as the chart's
ServiceMonitors say: each one turned into the scrape job the Prometheus
Operator would generate for it (Kubernetes endpoints discovery, keep by the
Service's labels and the endpoint's port name, the same target labels)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml


def _label(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def scrape_job(sm: dict[str, Any], kubeconfig: Path, interval: str) -> list[dict[str, Any]]:
    ns = sm["metadata"]["namespace"]
    spec = sm["spec"]
    jobs = []
    for i, ep in enumerate(spec["endpoints"]):
        relabel = [
            {"source_labels": [f"__meta_kubernetes_service_label_{_label(k)}"],
             "regex": v, "action": "keep"}
            for k, v in spec["selector"]["matchLabels"].items()
        ]
        relabel += [
            {"source_labels": ["__meta_kubernetes_endpoint_port_name"], "regex": ep["port"],
             "action": "keep"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"],
             "target_label": "container"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"},
            {"target_label": "endpoint", "replacement": ep["port"]},
        ]
        job = {
            "job_name": f"serviceMonitor/{ns}/{sm['metadata']['name']}/{i}",
            "kubernetes_sd_configs": [{
                "role": "endpoints",
                "namespaces": {"names": spec["namespaceSelector"]["matchNames"]},
                "kubeconfig_file": str(kubeconfig),
            }],
            "scrape_interval": interval,
            "scrape_timeout": "4s",
            "metrics_path": ep.get("path", "/metrics"),
            "scheme": ep.get("scheme", "http"),
            "relabel_configs": relabel,
        }
        if ep.get("tlsConfig", {}).get("insecureSkipVerify"):
            job["tls_config"] = {"insecure_skip_verify": True}
        jobs.append(job)
    return jobs


class Prometheus:
    def __init__(self, service_monitors: list[dict[str, Any]], kubeconfig: Path,
                 interval: str = "2s"):
        self.dir = Path(tempfile.mkdtemp(prefix="nsq-prom-"))
        jobs = [j for sm in service_monitors for j in scrape_job(sm, kubeconfig, interval)]
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": interval},
            "scrape_configs": jobs,
        }))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = open(self.dir / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]

    def targets(self) -> list[dict[str, Any]]:
        return self.api("targets")["activeTargets"]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def dashboard_queries(path: Path) -> list[tuple[str, str]]:
    """(panel title, expr) of every target, with Grafana's variables as "All"."""
    board = json.loads(path.read_text())
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))
    walk(board.get("panels", []))
    subst = {"$__rate_interval": "30s", "$namespace": ".*", "$topic": ".*", "$channel": ".*"}
    result = []
    for title, expr in out:
        for k, v in subst.items():
            expr = expr.replace(k, v)
        result.append((title, expr))
    return result


def wait(what: str, timeout: float, check):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")
