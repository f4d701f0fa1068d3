"""`helm install nsq ./charts` on a real node, then what users do with it.

In order (one release for the module): every pod Ready; lookupd lists the
brokers by their DNS names; `helm test`; the examples reach every broker;
in-cluster producer and consumer pods; a rolling restart of the brokers
under load loses no acknowledged message; Prometheus scrapes the pods as the
ServiceMonitors say and every dashboard query returns data; `helm upgrade`
with new broker flags rolls them without loss; `helm uninstall` keeps PVCs.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import helm_python
import pytest

import nsqchart
from conftest import NAMESPACE, RELEASE, ROOT, KUBECONFIG, Kubectl, ready, wait_until
from prom import Prometheus, dashboard_queries
from prom import wait as prom_wait

TAG = "0.1.0"
BENCH = f"nsq-rs/bench:{TAG}"
NSQD_SVC = f"nsq-nsqd.{NAMESPACE}.svc:4150"
DASHBOARD = ROOT / "deploy" / "grafana" / "nsq.json"
LOOKUPDS = [f"nsq-nsqlookupd-{i}.nsq-nsqlookupd.{NAMESPACE}.svc:4161" for i in range(3)]
# No Prometheus Operator here: the Prometheus test scrapes as the
# ServiceMonitors would, from their rendered form.
# A shorter preStop drain, so a rollout of 3 brokers fits inside the load.
VALUES = {"metrics": {"serviceMonitor": {"enabled": False}}, "nsqd": {"drainSeconds": 5}}


def helm() -> helm_python.Config:
    return helm_python.Config(kubeconfig_path=str(KUBECONFIG), namespace=NAMESPACE)


def http_json(url: str, timeout: float = 5) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def broker_ips(kubectl: Kubectl) -> dict[str, str]:
    pods = kubectl.pods("app.kubernetes.io/component=nsqd")
    return {p["metadata"]["name"]: p["status"].get("podIP") for p in pods}


def job(kubectl: Kubectl, name: str, args: list[str]) -> None:
    """Runs `bench ARGS` as a Job (no retries) in the release's namespace."""
    manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
                    "containers": [{
                        "name": "bench",
                        "image": BENCH,
                        "imagePullPolicy": "IfNotPresent",
                        "args": args,
                    }],
                }
            },
        },
    }
    kubectl.run("delete", "job", name, "-n", NAMESPACE, "--ignore-not-found", "--wait=true")
    kubectl.run("apply", "-f", "-", input=json.dumps(manifest))


def job_result(kubectl: Kubectl, name: str, timeout: float) -> str:
    """Waits for the Job to end; returns its log, failing the test if it failed."""
    def done():
        st = kubectl.json("get", "job", name, "-n", NAMESPACE).get("status", {})
        return "ok" if st.get("succeeded") else ("failed" if st.get("failed") else None)
    outcome = wait_until(f"job {name}", timeout, done, interval=2)
    log = kubectl.run("logs", f"job/{name}", "-n", NAMESPACE, check=False).stdout
    assert outcome == "ok", f"job {name} failed:\n{log}"
    kubectl.run("delete", "job", name, "-n", NAMESPACE, "--wait=false")
    return log


def summary(log: str, prefix: str) -> dict[str, str]:
    line = next(l for l in log.splitlines() if l.startswith(prefix))
    return dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)


@pytest.fixture(scope="module")
def release(kubectl: Kubectl) -> dict[str, Any]:
    started = time.monotonic()
    with helm() as cfg, helm_python.Chart.load(nsqchart.CHART_DIR) as chart:
        rel = cfg.install(chart, RELEASE, VALUES, namespace=NAMESPACE, create_namespace=True,
                          wait="watcher", timeout=300)
    print(f"helm install --wait: {time.monotonic() - started:.1f}s")
    return rel


def test_install_brings_every_pod_to_ready(kubectl: Kubectl, release):
    pods = kubectl.pods(f"app.kubernetes.io/instance={RELEASE}")
    names = sorted(p["metadata"]["name"] for p in pods)
    assert [n for n in names if n.startswith("nsq-nsqd-")] == [f"nsq-nsqd-{i}" for i in range(3)]
    assert [n for n in names if n.startswith("nsq-nsqlookupd-")] == [
        f"nsq-nsqlookupd-{i}" for i in range(3)]
    assert sum(n.startswith("nsq-operator-") for n in names) == 1
    assert all(ready(p) for p in pods), [(p["metadata"]["name"], p["status"]) for p in pods
                                         if not ready(p)]


def test_lookupd_lists_every_broker_by_its_dns_name(kubectl: Kubectl, release):
    lookupd = kubectl.pods("app.kubernetes.io/component=nsqlookupd")[0]["status"]["podIP"]

    def nodes():
        found = http_json(f"http://{lookupd}:4161/nodes")["producers"]
        names = sorted(p["broadcast_address"] for p in found)
        return names if len(names) == 3 else None
    names = wait_until("3 brokers in lookupd", 60, nodes)
    assert names == [f"nsq-nsqd-{i}.nsq-nsqd-headless.{NAMESPACE}.svc" for i in range(3)]


def test_helm_test_passes(release):
    with helm() as cfg:
        result = cfg.test(RELEASE, timeout=180, logs=True)
    print(result.get("logs", ""))


def test_examples_reach_every_broker(kubectl: Kubectl, release):
    kubectl.run("apply", "-n", NAMESPACE, "-f", str(ROOT / "deploy" / "examples"))

    def everywhere():
        for pod, ip in broker_ips(kubectl).items():
            stats = http_json(f"http://{ip}:4151/stats?format=json")
            topics = {t["topic_name"]: t for t in stats["topics"]}
            if "orders" not in topics:
                return None
            if "billing" not in {c["channel_name"] for c in topics["orders"]["channels"]}:
                return None
        return True
    wait_until("orders/billing on every broker", 60, everywhere)
    nt = kubectl.json("get", "nsqtopic", "orders", "-n", NAMESPACE)
    conds = {c["type"]: c["status"] for c in nt["status"]["conditions"]}
    assert conds.get("Ready") == "True", nt["status"]


def soak(kubectl: Kubectl, topic: str, count: int, rate: int, during=None) -> tuple[dict, dict]:
    """A consumer Job (via lookupd) and a producer Job (via the Service) for
    `count` numbered messages; `during` runs once the producer is under way."""
    run = f"{topic}-{int(time.time())}"
    kubectl.run("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps({
        "apiVersion": "nsq.io/v1alpha1", "kind": "NsqChannel",
        "metadata": {"name": f"{topic}-soak"},
        "spec": {"topicName": topic, "channelName": "soak"},
    }))

    def channel_everywhere():
        for ip in broker_ips(kubectl).values():
            stats = http_json(f"http://{ip}:4151/stats?format=json")
            t = [t for t in stats["topics"] if t["topic_name"] == topic]
            if not t or "soak" not in {c["channel_name"] for c in t[0]["channels"]}:
                return None
        return True
    wait_until(f"{topic}/soak on every broker", 60, channel_everywhere)
    lookupd_args = [f"--lookupd-http-address={a}" for a in LOOKUPDS]
    job(kubectl, f"{topic}-consume", ["consume", *lookupd_args, f"--topic={topic}",
                                      "--channel=soak", f"--expect={count}", f"--run-id={run}",
                                      "--timeout=600s"])
    job(kubectl, f"{topic}-produce", ["produce", f"--nsqd-tcp-address={NSQD_SVC}",
                                      f"--topic={topic}", f"--count={count}", f"--rate={rate}",
                                      f"--run-id={run}", "--timeout=600s"])
    if during is not None:
        wait_until("the producer to start", 120, lambda: any(
            p["status"].get("phase") == "Running"
            for p in kubectl.pods(f"job-name={topic}-produce")))
        time.sleep(3)
        during()
    produced = summary(job_result(kubectl, f"{topic}-produce", 660), "produce:")
    consumed = summary(job_result(kubectl, f"{topic}-consume", 660), "consume:")
    print(f"{topic}: produce {produced}; consume {consumed}")
    assert int(produced["acked"]) == count
    assert consumed["missing"] == "0"
    assert int(consumed["unique"]) == count
    return produced, consumed


def test_in_cluster_producer_and_consumer_pods(kubectl: Kubectl, release):
    _, consumed = soak(kubectl, "incluster", 5000, 2000)
    # No broker restarted: nothing arrives twice.
    assert consumed["duplicates"] == "0", consumed


def rollout_restart(kubectl: Kubectl) -> None:
    started = time.monotonic()
    kubectl.run("rollout", "restart", "statefulset/nsq-nsqd", "-n", NAMESPACE)
    kubectl.run("rollout", "status", "statefulset/nsq-nsqd", "-n", NAMESPACE, "--timeout=400s",
                timeout=420)
    print(f"rollout restart of 3 brokers: {time.monotonic() - started:.1f}s")


def test_rolling_restart_under_load_loses_no_acknowledged_message(kubectl: Kubectl, release):
    produced, consumed = soak(kubectl, "rolling", 20000, 250,
                              during=lambda: rollout_restart(kubectl))
    # Every broker restarted while the producer was publishing: it had to
    # follow the Service to another one at least once.
    assert int(produced["reconnects"]) >= 1, produced
    print(f"rolling restart: {consumed['duplicates']} duplicates, "
          f"{produced.get('resent', '?')} resent, {produced.get('reconnects', '?')} reconnects")


def test_prometheus_scrapes_every_pod_and_every_dashboard_query_has_data(
        kubectl: Kubectl, release):
    rendered = nsqchart.render({"metrics": {"serviceMonitor": {"enabled": True}}},
                               namespace=NAMESPACE)
    monitors = rendered.of_kind("ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {
        "nsq-nsqd", "nsq-nsqlookupd", "nsq-operator"}
    prom = Prometheus(monitors, kubectl)
    try:
        def all_up():
            prom.refresh()
            t = prom.targets()
            return t if len(t) == 7 and all(x["health"] == "up" for x in t) else None
        targets = prom_wait("7 targets up (3 brokers, 3 lookupds, the operator)", 90, all_up)
        assert sorted({t["labels"]["job"] for t in targets}) == [
            "nsq-nsqd-headless", "nsq-nsqlookupd", "nsq-operator"]
        # Traffic while Prometheus watches, so rates and latencies have data.
        soak(kubectl, "dashboard", 3000, 300)
        time.sleep(5)
        empty = [(title, expr) for title, expr in dashboard_queries(DASHBOARD)
                 if not prom.query(expr)]
        assert not empty, "dashboard queries without data:\n" + "\n".join(
            f"{t}: {e}" for t, e in empty)
    finally:
        prom.close()


def test_helm_upgrade_with_new_broker_flags_rolls_without_loss(kubectl: Kubectl, release):
    values = {**VALUES, "nsqd": {**VALUES["nsqd"], "flags": {"msg-timeout": "75s"}}}

    def upgrade():
        with helm() as cfg, helm_python.Chart.load(nsqchart.CHART_DIR) as chart:
            cfg.upgrade(chart, RELEASE, values, namespace=NAMESPACE, wait="watcher", timeout=400)
    produced, _ = soak(kubectl, "upgrade", 20000, 250, during=upgrade)
    assert int(produced["reconnects"]) >= 1, produced
    for pod in kubectl.pods("app.kubernetes.io/component=nsqd"):
        args = pod["spec"]["containers"][0]["args"]
        assert "--msg-timeout=75s" in args, args
        assert ready(pod)


def test_helm_uninstall_keeps_the_brokers_volumes(kubectl: Kubectl, release):
    with helm() as cfg:
        cfg.uninstall(RELEASE, wait="watcher", timeout=180)
    wait_until("the release's pods to go", 120,
                lambda: not kubectl.json("get", "pods", "-n", NAMESPACE, "-l",
                                         "app.kubernetes.io/instance=nsq")["items"])
    pvcs = sorted(p["metadata"]["name"]
                  for p in kubectl.json("get", "pvc", "-n", NAMESPACE)["items"])
    assert pvcs == [f"data-nsq-nsqd-{i}" for i in range(3)], pvcs
