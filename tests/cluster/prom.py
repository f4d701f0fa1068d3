"""Prometheus (Debian's package) scraping the cluster as the chart's
ServiceMonitors say: each one turned into the scrape job the Prometheus
Operator would generate for it (the Service's labels and the endpoint's port
name select the targets; the same target labels)."""

from __future__ import annotations

import json
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


def _selected(svc: dict[str, Any], sm: dict[str, Any]) -> bool:
    labels = svc["metadata"].get("labels") or {}
    spec = sm["spec"]
    return (svc["metadata"]["namespace"] in spec["namespaceSelector"]["matchNames"]
            and all(labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items()))


def targets_for(sm: dict[str, Any], ep: dict[str, Any], services: list[dict[str, Any]],
                endpoints: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """What the Prometheus Operator's endpoints discovery and relabelling give
    for one ServiceMonitor endpoint: every address of a selected Service's
    Endpoints on the named port, labelled namespace/service/pod/endpoint/job."""
    out = []
    for svc in services:
        if not _selected(svc, sm):
            continue
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        for subset in endpoints.get((ns, name), {}).get("subsets") or []:
            ports = [p for p in subset.get("ports") or [] if p.get("name") == ep["port"]]
            for port in ports:
                for addr in subset.get("addresses") or []:
                    out.append({
                        "targets": [f"{addr['ip']}:{port['port']}"],
                        "labels": {
                            "namespace": ns,
                            "service": name,
                            "job": name,
                            "endpoint": ep["port"],
                            "pod": (addr.get("targetRef") or {}).get("name", ""),
                        },
                    })
    return out


class Prometheus:
    """Debian's Prometheus is built without Kubernetes service discovery, so
    the ServiceMonitors' selection is done here (from the API's Services and
    Endpoints) and handed over through file-based discovery, refreshed by
    `refresh()`."""

    def __init__(self, service_monitors: list[dict[str, Any]], kubectl, interval: str = "2s"):
        self.monitors = service_monitors
        self.kubectl = kubectl
        self.dir = Path(tempfile.mkdtemp(prefix="nsq-prom-"))
        jobs = []
        for sm in service_monitors:
            for i, ep in enumerate(sm["spec"]["endpoints"]):
                job = {
                    "job_name": f"serviceMonitor/{sm['metadata']['namespace']}/"
                                f"{sm['metadata']['name']}/{i}",
                    "file_sd_configs": [{"files": [str(self._file(sm, i))],
                                         "refresh_interval": "1s"}],
                    "scrape_interval": interval,
                    "scrape_timeout": "2s",
                    "metrics_path": ep.get("path", "/metrics"),
                    "scheme": ep.get("scheme", "http"),
                }
                if ep.get("tlsConfig", {}).get("insecureSkipVerify"):
                    job["tls_config"] = {"insecure_skip_verify": True}
                jobs.append(job)
        self.refresh()
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

    def _file(self, sm: dict[str, Any], i: int) -> Path:
        return self.dir / f"{sm['metadata']['name']}-{i}.json"

    def refresh(self) -> None:
        services = self.kubectl.json("get", "services", "--all-namespaces")["items"]
        endpoints = {(e["metadata"]["namespace"], e["metadata"]["name"]): e for e in
                     self.kubectl.json("get", "endpoints", "--all-namespaces")["items"]}
        for sm in self.monitors:
            for i, ep in enumerate(sm["spec"]["endpoints"]):
                path = self._file(sm, i)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(targets_for(sm, ep, services, endpoints)))
                tmp.replace(path)

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
        if self.proc.poll() is not None:
            raise AssertionError("prometheus exited:\n" + (self.dir / "prometheus.log").read_text())
        try:
            return self.api("targets")["activeTargets"]
        except OSError:  # not listening yet
            return []

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
