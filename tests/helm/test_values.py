"""What the chart renders, for each values combination: the facts a platform
team checks before trusting it (DNS broadcast, lookupd addresses, disruption
budgets, least-privilege RBAC, shutdown timing, security defaults)."""

from __future__ import annotations

import re
import shutil
import tomllib
from typing import Any

import helm_python
import pytest

import nsqchart
from conftest import VALUE_SETS, values
from nsqchart import NAMESPACE, Rendered, render

WORKLOADS = {
    "nsqlookupd": ("StatefulSet", "nsq-nsqlookupd"),
    "nsqd": ("StatefulSet", "nsq-nsqd"),
    "operator": ("Deployment", "nsq-operator"),
}


def present(r: Rendered) -> list[str]:
    """The components this rendering runs."""
    kinds = {(o["kind"], o["metadata"]["name"]) for o in r.objects}
    return [c for c, kn in WORKLOADS.items() if kn in kinds]


def pod_spec(r: Rendered, component: str) -> dict[str, Any]:
    kind, name = WORKLOADS[component]
    return r.get(kind, name)["spec"]["template"]["spec"]


def container(r: Rendered, component: str) -> dict[str, Any]:
    (c,) = pod_spec(r, component)["containers"]
    return c


def args(r: Rendered, component: str) -> list[str]:
    return container(r, component)["args"]


def flag_values(r: Rendered, component: str, flag: str) -> list[str]:
    prefix = f"--{flag}="
    return [a[len(prefix):] for a in args(r, component) if a.startswith(prefix)]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    match = selector.get("matchLabels", {})
    assert not selector.get("matchExpressions"), "only matchLabels selectors are expected"
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def lookupd_hosts(n: int, suffix: str = f"{NAMESPACE}.svc") -> list[str]:
    return [f"nsq-nsqlookupd-{i}.nsq-nsqlookupd.{suffix}" for i in range(n)]


# ------------------------------------------------------------------ brokers


def test_brokers_broadcast_their_stable_dns_name_not_their_ip(default):
    sts = default.get("StatefulSet", "nsq-nsqd")
    assert flag_values(default, "nsqd", "broadcast-address") == [
        f"$(POD_NAME).nsq-nsqd-headless.{NAMESPACE}.svc"
    ]
    env = {e["name"]: e for e in container(default, "nsqd")["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "status.podIP" not in str(sts)
    # <pod>.<service> resolves only through the StatefulSet's governing
    # headless Service, which must select the brokers.
    assert sts["spec"]["serviceName"] == "nsq-nsqd-headless"
    headless = default.get("Service", "nsq-nsqd-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert selects({"matchLabels": headless["spec"]["selector"]},
                   sts["spec"]["template"]["metadata"]["labels"])


def test_brokers_broadcast_fully_qualified_names_with_a_cluster_domain(rendered_sets):
    r = rendered_sets["fully-qualified-names"]
    assert flag_values(r, "nsqd", "broadcast-address") == [
        f"$(POD_NAME).nsq-nsqd-headless.{NAMESPACE}.svc.cluster.local"
    ]
    assert flag_values(r, "nsqd", "lookupd-tcp-address") == [
        f"{h}:4160" for h in lookupd_hosts(3, f"{NAMESPACE}.svc.cluster.local")
    ]


@pytest.mark.parametrize("name,lookupds", [("defaults", 3), ("single-replicas", 1), ("more-replicas", 5)])
def test_every_broker_gets_one_address_per_lookupd_pod(rendered_sets, name, lookupds):
    r = rendered_sets[name]
    lookupd = r.get("StatefulSet", "nsq-nsqlookupd")
    assert lookupd["spec"]["replicas"] == lookupds
    assert lookupd["spec"]["serviceName"] == "nsq-nsqlookupd"
    assert r.get("Service", "nsq-nsqlookupd")["spec"]["clusterIP"] == "None"
    assert flag_values(r, "nsqd", "lookupd-tcp-address") == [
        f"{h}:4160" for h in lookupd_hosts(lookupds)
    ]


@pytest.mark.parametrize("name,lookupds", [("defaults", 3), ("single-replicas", 1), ("more-replicas", 5)])
def test_operator_asks_every_lookupd_for_the_brokers(rendered_sets, name, lookupds):
    assert flag_values(rendered_sets[name], "operator", "lookupd-http-address") == [
        f"{h}:4161" for h in lookupd_hosts(lookupds)
    ]


def test_lookupd_pods_broadcast_their_stable_dns_name(default):
    assert flag_values(default, "nsqlookupd", "broadcast-address") == [
        f"$(POD_NAME).nsq-nsqlookupd.{NAMESPACE}.svc"
    ]


def test_broker_keeps_its_queues_on_a_volume_mounted_at_the_data_path(default):
    sts = default.get("StatefulSet", "nsq-nsqd")
    (data_path,) = flag_values(default, "nsqd", "data-path")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container(default, "nsqd")["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == data_path
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"


def test_client_service_exposes_tcp_4150_and_http_4151_of_ready_brokers(default):
    svc = default.get("Service", "nsq-nsqd")
    assert svc["spec"].get("clusterIP") != "None"
    assert not svc["spec"].get("publishNotReadyAddresses")
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert ports == {"tcp": (4150, "tcp"), "http": (4151, "http")}
    container_ports = {p["name"]: p["containerPort"] for p in container(default, "nsqd")["ports"]}
    assert container_ports == {"tcp": 4150, "http": 4151}
    assert selects({"matchLabels": svc["spec"]["selector"]},
                   default.get("StatefulSet", "nsq-nsqd")["spec"]["template"]["metadata"]["labels"])


def helm_test_container(r: Rendered) -> dict[str, Any]:
    (c,) = r.get("Pod", "nsq-test-pub-sub")["spec"]["containers"]
    return c


def test_images_come_from_the_registry_and_tag_in_values(default):
    assert helm_test_container(default)["image"] == "nsq-rs/bench:0.1.0"
    assert helm_test_container(default)["imagePullPolicy"] == "IfNotPresent"
    assert container(default, "nsqd")["image"] == "nsq-rs/nsqd:0.1.0"
    assert container(default, "nsqlookupd")["image"] == "nsq-rs/nsqlookupd:0.1.0"
    assert container(default, "operator")["image"] == "nsq-rs/nsq-operator:0.1.0"
    r = render({"image": {"registry": "ghcr.io/acme/", "tag": "1.2.3"},
                "operator": {"image": {"repository": "ops/nsq-operator", "tag": "dev"}}})
    assert container(r, "nsqd")["image"] == "ghcr.io/acme/nsq-rs/nsqd:1.2.3"
    assert container(r, "operator")["image"] == "ghcr.io/acme/ops/nsq-operator:dev"
    assert helm_test_container(r)["image"] == "ghcr.io/acme/nsq-rs/bench:1.2.3"


def test_disabling_the_operator_leaves_no_operator_objects(rendered_sets):
    r = rendered_sets["operator-disabled"]
    assert present(r) == ["nsqlookupd", "nsqd"]
    leftovers = [(o["kind"], o["metadata"]["name"]) for o in r.all()
                 if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "operator"]
    assert leftovers == []
    assert "the operator is disabled" in r.notes


def test_default_replicas_are_three_brokers_three_lookupds_one_operator(default):
    assert default.get("StatefulSet", "nsq-nsqd")["spec"]["replicas"] == 3
    assert default.get("StatefulSet", "nsq-nsqlookupd")["spec"]["replicas"] == 3
    assert default.get("Deployment", "nsq-operator")["spec"]["replicas"] == 1


# -------------------------------------------------------------- broker flags


def test_broker_flags_come_from_values_verbatim(rendered_sets):
    r = rendered_sets["custom-broker-flags"]
    a = args(r, "nsqd")
    assert "--mem-queue-size=0" in a
    assert "--max-msg-size=4194304" in a
    assert "--max-body-size=20971520" in a
    assert "--max-bytes-per-file=1073741824" in a  # not 1.073741824e+09
    assert "--msg-timeout=2m30s" in a
    assert "--e2e-processing-latency-percentile=0.99" in a
    assert "--snappy=false" in a
    # null removes a default flag; nsqd's own default applies.
    assert not flag_values(r, "nsqd", "sync-every")
    # extraArgs come last, verbatim.
    assert a[-1] == "--max-channel-consumers=50"


def test_default_broker_flags_match_nsqd_defaults(default):
    assert flag_values(default, "nsqd", "mem-queue-size") == ["10000"]
    assert flag_values(default, "nsqd", "max-msg-size") == ["1048576"]
    assert flag_values(default, "nsqd", "msg-timeout") == ["60s"]
    assert flag_values(default, "nsqd", "max-bytes-per-file") == ["104857600"]


def test_every_flag_is_rendered_once(rendered_sets):
    for name, r in rendered_sets.items():
        for component in present(r):
            names = [a.split("=", 1)[0] for a in args(r, component)
                     if a.startswith("--") and "address" not in a]
            assert len(names) == len(set(names)), f"{name}/{component}: {names}"


@pytest.mark.parametrize("flag", ["data-path", "broadcast-address", "lookupd-tcp-address", "tcp-address"])
def test_schema_refuses_broker_flags_the_chart_owns(flag):
    chart = helm_python.Chart.load(nsqchart.CHART_DIR)
    with pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema({"nsqd": {"flags": {flag: "x"}}})


@pytest.mark.parametrize("bad", [
    {"nsqd": {"replica": 3}},
    {"nsqd": {"replicas": 0}},
    {"nsqd": {"flags": {"mem-queue-size": "lots"}}},
    {"nsqd": {"flags": {"msg-timeout": "60"}}},
    {"operator": {"replicas": 3}},
    {"nsqd": {"persistence": {"size": "ten gigs"}}},
    {"networkPolicy": {"clients": [{"podSelektor": {}}]}},
])
def test_schema_refuses_mistaken_values(bad):
    chart = helm_python.Chart.load(nsqchart.CHART_DIR)
    with pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema(bad)


# ------------------------------------------------------------ availability


PDB_TARGETS = {
    "nsq-nsqlookupd": WORKLOADS["nsqlookupd"],
    "nsq-nsqd": WORKLOADS["nsqd"],
    "nsq-operator": WORKLOADS["operator"],
}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_each_budget_selects_exactly_its_workloads_pods(rendered_sets, name):
    r = rendered_sets[name]
    pdbs = r.of_kind("PodDisruptionBudget")
    expected = {"nsq-nsqlookupd", "nsq-nsqd"}
    if "operator" in present(r) and r.get("Deployment", "nsq-operator")["spec"]["replicas"] > 1:
        expected.add("nsq-operator")
    assert {p["metadata"]["name"] for p in pdbs} == expected
    workloads = [o for o in r.objects if o["kind"] in ("StatefulSet", "Deployment")]
    for pdb in pdbs:
        kind, wname = PDB_TARGETS[pdb["metadata"]["name"]]
        matched = [
            (w["kind"], w["metadata"]["name"]) for w in workloads
            if selects(pdb["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
        ]
        assert matched == [(kind, wname)]
        # ... and says the same as the workload's own selector.
        w = r.get(kind, wname)
        assert pdb["spec"]["selector"] == w["spec"]["selector"]


@pytest.mark.parametrize("name", ["defaults", "single-replicas"])
def test_budgets_allow_one_pod_down_so_drains_never_block(rendered_sets, name):
    r = rendered_sets[name]
    for pdb_name in ("nsq-nsqlookupd", "nsq-nsqd"):
        spec = r.get("PodDisruptionBudget", pdb_name)["spec"]
        assert spec == {"maxUnavailable": 1, "selector": spec["selector"]}
    # A budget over a single operator replica would forbid every eviction.
    assert not [p for p in r.of_kind("PodDisruptionBudget") if p["metadata"]["name"] == "nsq-operator"]


def test_two_operators_get_a_budget_and_leader_election(rendered_sets):
    r = rendered_sets["operator-ha"]
    assert r.get("Deployment", "nsq-operator")["spec"]["replicas"] == 2
    assert r.get("PodDisruptionBudget", "nsq-operator")["spec"]["minAvailable"] == 1
    assert "--leader-election=true" in args(r, "operator")


def test_two_operators_without_leader_election_are_refused():
    with pytest.raises(helm_python.HelmError, match="leader"):
        render({"operator": {"replicas": 2, "leaderElection": False}})


@pytest.mark.parametrize("kube_version,api_versions,expected", [
    ("v1.30.0", None, "policy/v1"),
    ("v1.21.0", None, "policy/v1"),
    ("v1.20.0", None, "policy/v1beta1"),
    # What Helm sees from a real cluster's discovery: the kinds it serves.
    ("v1.20.0", ["policy/v1beta1/PodDisruptionBudget"], "policy/v1beta1"),
    ("v1.24.0", ["policy/v1/PodDisruptionBudget", "policy/v1beta1/PodDisruptionBudget"], "policy/v1"),
])
def test_budget_api_version_follows_what_the_cluster_serves(kube_version, api_versions, expected):
    r = render({}, kube_version=kube_version, api_versions=api_versions)
    assert {p["apiVersion"] for p in r.of_kind("PodDisruptionBudget")} == {expected}


@pytest.mark.parametrize("component", sorted(WORKLOADS))
def test_pods_prefer_different_nodes_without_requiring_it(default, component):
    affinity = pod_spec(default, component)["affinity"]
    assert set(affinity) == {"podAntiAffinity"}
    anti = affinity["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    kind, name = WORKLOADS[component]
    assert term["podAffinityTerm"]["labelSelector"] == default.get(kind, name)["spec"]["selector"]


def test_custom_affinity_replaces_the_default():
    custom = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "pool", "operator": "In", "values": ["nsq"]}]}]}}}
    r = render({"nsqd": {"affinity": custom}})
    assert pod_spec(r, "nsqd")["affinity"] == custom


# ----------------------------------------------------------------- shutdown


def test_broker_shutdown_leaves_lookupd_drains_then_has_time_to_flush(default):
    spec = pod_spec(default, "nsqd")
    grace = spec["terminationGracePeriodSeconds"]
    command = container(default, "nsqd")["lifecycle"]["preStop"]["exec"]["command"]
    script = command[-1]
    assert command[0] == "/usr/local/bin/busybox"  # shipped in the nsqd image
    # Leaves every lookupd through nsqd's own API ...
    assert "PUT /config/nsqlookupd_tcp_addresses" in script
    assert "Content-Length: 2" in script and script.index("[]") > script.index("PUT ")
    assert "nc 127.0.0.1 4151" in script
    # ... then waits drainSeconds before the kubelet sends SIGTERM.
    (drain,) = [int(s) for s in re.findall(r"sleep (\d+)\s*$", script)]
    assert drain == 15
    # The grace period covers the preStop and then the flush to disk: far
    # more than the 5 s the usual NSQ charts allow.
    assert grace == 120
    assert grace - drain - 2 >= 60


def test_longer_drain_gets_a_longer_grace_period(rendered_sets):
    r = rendered_sets["custom-broker-flags"]
    assert pod_spec(r, "nsqd")["terminationGracePeriodSeconds"] == 300
    assert container(r, "nsqd")["lifecycle"]["preStop"]["exec"]["command"][-1].rstrip().endswith("sleep 30")


def test_grace_period_too_short_to_flush_after_the_drain_is_refused():
    with pytest.raises(helm_python.HelmError, match="terminationGracePeriodSeconds"):
        render({"nsqd": {"drainSeconds": 60, "terminationGracePeriodSeconds": 65}})


# ------------------------------------------------------------------ probes


@pytest.mark.parametrize("component,port", [("nsqd", "http"), ("nsqlookupd", "http")])
def test_nsq_daemons_are_probed_on_ping(default, component, port):
    c = container(default, component)
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/ping", "port": port}
    port_names = {p["name"] for p in c["ports"]}
    assert port in port_names


def test_broker_liveness_waits_for_a_slow_start(default):
    c = container(default, "nsqd")
    startup = c["startupProbe"]
    assert startup["httpGet"]["path"] == "/ping"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


def test_operator_is_probed_on_healthz_and_readyz(default):
    c = container(default, "operator")
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert "--http-address=0.0.0.0:8080" in c["args"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8080}


# ----------------------------------------------------------------- security


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_pod_runs_non_root_read_only_without_capabilities(rendered_sets, name):
    r = rendered_sets[name]
    pods = [(o["metadata"]["name"], o["spec"]["template"]["spec"])
            for o in r.objects if o["kind"] in ("StatefulSet", "Deployment")]
    pods += [(o["metadata"]["name"], o["spec"]) for o in r.of_kind("Pod")]
    assert len(pods) == len(present(r)) + 1  # + the helm test pod
    for pod_name, spec in pods:
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, pod_name
        assert psc["runAsUser"] != 0, pod_name
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, pod_name
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), pod_name
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, pod_name
            assert sc["allowPrivilegeEscalation"] is False, pod_name
            assert sc["capabilities"]["drop"] == ["ALL"], pod_name
            assert not sc["capabilities"].get("add"), pod_name
            assert not sc.get("privileged"), pod_name
            assert c["resources"]["requests"]["cpu"], pod_name
            assert c["resources"]["requests"]["memory"], pod_name


def test_only_the_operator_gets_an_api_token(default):
    assert pod_spec(default, "nsqd")["automountServiceAccountToken"] is False
    assert pod_spec(default, "nsqlookupd")["automountServiceAccountToken"] is False
    assert default.get("Pod", "nsq-test-pub-sub")["spec"]["automountServiceAccountToken"] is False
    assert pod_spec(default, "operator")["serviceAccountName"] == "nsq-operator"
    assert "automountServiceAccountToken" not in pod_spec(default, "operator")


# --------------------------------------------------------------------- RBAC

# Everything the operator does with the API (operator/src/controller,
# leader.rs, and kube-runtime 5's finalizer, Controller and Recorder):
OPERATOR_RULES = {
    # watch NsqTopic/NsqChannel (Controller: list, watch), read a channel's
    # NsqTopic (get_opt: get), add/remove its finalizer (finalizer(): a JSON
    # patch; the operator never replaces a whole object, so no update)
    ("nsq.io", "nsqchannels", "get"), ("nsq.io", "nsqchannels", "list"),
    ("nsq.io", "nsqchannels", "watch"), ("nsq.io", "nsqchannels", "patch"),
    ("nsq.io", "nsqtopics", "get"), ("nsq.io", "nsqtopics", "list"),
    ("nsq.io", "nsqtopics", "watch"), ("nsq.io", "nsqtopics", "patch"),
    # status through server-side apply (patch_status)
    ("nsq.io", "nsqchannels/status", "patch"), ("nsq.io", "nsqtopics/status", "patch"),
    # kube-runtime's Recorder: create an Event, patch it when it repeats
    ("events.k8s.io", "events", "create"), ("events.k8s.io", "events", "patch"),
}
# leader.rs: get_opt, create, replace of its one Lease.
LEASE_RULES = {
    ("coordination.k8s.io", "leases", "create", None),
    ("coordination.k8s.io", "leases", "get", "nsq-operator"),
    ("coordination.k8s.io", "leases", "update", "nsq-operator"),
}


def flatten(rules: list[dict[str, Any]]) -> set[tuple]:
    out = set()
    for rule in rules:
        assert "nonResourceURLs" not in rule
        names = rule.get("resourceNames") or [None]
        for g in rule["apiGroups"]:
            for res in rule["resources"]:
                for verb in rule["verbs"]:
                    for n in names:
                        assert "*" not in (g, res, verb), rule
                        out.add((g, res, verb, n))
    return out


def bound_rules(r: Rendered, sa: str) -> dict[tuple[str, str | None], set[tuple]]:
    """The rules granted to ServiceAccount `sa`, by (role kind, namespace)."""
    granted: dict[tuple[str, str | None], set[tuple]] = {}
    for b in r.of_kind("ClusterRoleBinding") + r.of_kind("RoleBinding"):
        if not any(s["kind"] == "ServiceAccount" and s["name"] == sa
                   and s["namespace"] == NAMESPACE for s in b["subjects"]):
            continue
        ns = b["metadata"].get("namespace")
        role = r.get(b["roleRef"]["kind"], b["roleRef"]["name"])
        assert role["metadata"].get("namespace") == ns
        granted.setdefault((b["roleRef"]["kind"], ns), set()).update(flatten(role["rules"]))
    return granted


def test_operator_rbac_is_exactly_what_it_uses(default):
    granted = bound_rules(default, "nsq-operator")
    assert granted == {
        ("ClusterRole", None): {(g, r, v, None) for g, r, v in OPERATOR_RULES},
        ("Role", NAMESPACE): LEASE_RULES,
    }
    # The lease it may touch is the one it is told to use.
    c = container(default, "operator")
    assert "--lease-name=nsq-operator" in c["args"]
    assert f"--lease-namespace={NAMESPACE}" in c["args"]


def test_operator_watching_one_namespace_gets_no_cluster_role(rendered_sets):
    r = rendered_sets["operator-one-namespace"]
    assert not r.of_kind("ClusterRole") and not r.of_kind("ClusterRoleBinding")
    granted = bound_rules(r, "nsq-operator")
    assert granted == {
        ("Role", "apps"): {(g, res, v, None) for g, res, v in OPERATOR_RULES},
        ("Role", NAMESPACE): LEASE_RULES,
    }
    assert "--namespace=apps" in args(r, "operator")


def test_operator_without_leader_election_gets_no_lease_rights():
    r = render({"operator": {"leaderElection": False}})
    assert ("Role", NAMESPACE) not in bound_rules(r, "nsq-operator")
    assert "--leader-election=false" in args(r, "operator")


def test_brokers_and_lookupds_get_no_rbac(default):
    assert bound_rules(default, "nsq-nsqd") == {}
    assert bound_rules(default, "nsq-nsqlookupd") == {}


# ------------------------------------------------------------------ metrics


def test_service_monitors_scrape_every_component_once(rendered_sets):
    r = rendered_sets["metrics-on"]
    monitors = r.of_kind("ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {"nsq-nsqd", "nsq-nsqlookupd", "nsq-operator"}
    assert {m["metadata"]["name"] for m in rendered_sets["operator-disabled"].of_kind("ServiceMonitor")} \
        == {"nsq-nsqd", "nsq-nsqlookupd"}
    services = r.of_kind("Service")
    for m in monitors:
        assert m["metadata"]["labels"]["release"] == "prometheus"
        matched = [s for s in services if selects(m["spec"]["selector"], s["metadata"]["labels"])]
        assert len(matched) == 1, (m["metadata"]["name"], [s["metadata"]["name"] for s in matched])
        (endpoint,) = m["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        assert endpoint["port"] in {p["name"] for p in matched[0]["spec"]["ports"]}
        # Every pod is a target: the matched Service must not be the client
        # Service that hides brokers behind one virtual IP.
        assert matched[0]["metadata"]["name"] != "nsq-nsqd"


@pytest.mark.parametrize("name", ["defaults", "metrics-off"])
def test_metrics_extras_are_off_by_default(rendered_sets, name):
    r = rendered_sets[name]
    assert not r.of_kind("ServiceMonitor")
    assert not r.of_kind("ConfigMap")


def test_dashboard_is_skipped_with_a_warning_while_the_chart_has_no_json(rendered_sets):
    if nsqchart.DASHBOARD_IN_CHART.exists():
        pytest.skip("the chart carries dashboards/nsq.json")
    r = rendered_sets["metrics-on"]
    assert not r.of_kind("ConfigMap")
    assert "no\ndashboards/nsq.json" in r.notes


def test_dashboard_config_map_carries_the_charts_json(tmp_path, monkeypatch):
    chart = tmp_path / "charts"
    shutil.copytree(nsqchart.CHART_DIR, chart)
    (chart / "dashboards").mkdir(exist_ok=True)
    (chart / "dashboards" / "nsq.json").write_text('{"title": "NSQ"}\n')
    monkeypatch.setattr(nsqchart, "CHART_DIR", chart)
    r = render({"metrics": {"dashboard": {"enabled": True}}})
    (cm,) = r.of_kind("ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["data"] == {"nsq.json": '{"title": "NSQ"}'}
    assert "WARNING" not in r.notes


# ----------------------------------------------------------- network policy


def policy_peers(policy: dict[str, Any], port: str) -> list[dict[str, Any]]:
    peers = []
    for rule in policy["spec"]["ingress"]:
        if any(p["port"] == port for p in rule["ports"]):
            peers.extend(rule["from"])
    return peers


def pod_labels(r: Rendered, component: str) -> dict[str, str]:
    if component == "test":
        return r.get("Pod", "nsq-test-pub-sub")["metadata"]["labels"]
    kind, name = WORKLOADS[component]
    return r.get(kind, name)["spec"]["template"]["metadata"]["labels"]


def allows_pod(peers: list[dict[str, Any]], labels: dict[str, str]) -> bool:
    return any(set(p) == {"podSelector"} and selects(p["podSelector"], labels) for p in peers)


def test_network_policy_admits_only_peers_operator_tests_and_chosen_clients(rendered_sets):
    r = rendered_sets["network-policy"]
    clients = VALUE_SETS["network-policy"]["networkPolicy"]["clients"]
    scrapers = VALUE_SETS["network-policy"]["networkPolicy"]["metricsScrapers"]
    policies = {p["metadata"]["name"]: p for p in r.of_kind("NetworkPolicy")}
    assert set(policies) == {"nsq-nsqd", "nsq-nsqlookupd", "nsq-operator"}
    for name, p in policies.items():
        assert p["spec"]["policyTypes"] == ["Ingress"]
        component = {"nsq-nsqd": "nsqd", "nsq-nsqlookupd": "nsqlookupd", "nsq-operator": "operator"}[name]
        assert p["spec"]["podSelector"]["matchLabels"] == r.get(*WORKLOADS[component])["spec"]["selector"]["matchLabels"]
        # Named ports must exist on the selected container.
        names = {cp["name"] for cp in container(r, component)["ports"]}
        assert {port["port"] for rule in p["spec"]["ingress"] for port in rule["ports"]} <= names

    nsqd = policies["nsq-nsqd"]
    for port in ("tcp", "http"):
        peers = policy_peers(nsqd, port)
        assert all(c in peers for c in clients)
        assert allows_pod(peers, pod_labels(r, "operator"))
        assert allows_pod(peers, pod_labels(r, "test"))
        assert {"namespaceSelector": {}} not in peers
    assert all(s in policy_peers(nsqd, "http") for s in scrapers)
    assert not any(s in policy_peers(nsqd, "tcp") for s in scrapers)

    lookupd = policies["nsq-nsqlookupd"]
    # Registration (4160) is for brokers only.
    (broker_peer,) = policy_peers(lookupd, "tcp")
    assert allows_pod([broker_peer], pod_labels(r, "nsqd"))
    assert not allows_pod([broker_peer], pod_labels(r, "operator"))
    http = policy_peers(lookupd, "http")
    assert all(c in http for c in clients + scrapers)
    assert allows_pod(http, pod_labels(r, "operator")) and allows_pod(http, pod_labels(r, "test"))

    assert policy_peers(policies["nsq-operator"], "http") == scrapers


def test_network_policy_without_client_list_admits_every_namespace(rendered_sets):
    r = rendered_sets["network-policy-open"]
    nsqd = r.get("NetworkPolicy", "nsq-nsqd")
    assert {"namespaceSelector": {}} in policy_peers(nsqd, "tcp")
    lookupd = r.get("NetworkPolicy", "nsq-nsqlookupd")
    assert {"namespaceSelector": {}} not in policy_peers(lookupd, "tcp")


# --------------------------------------------------------------- helm test


def test_helm_test_publishes_through_the_service_and_consumes_through_lookupd(default):
    pod = default.get("Pod", "nsq-test-pub-sub")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert "hook-succeeded" in pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    assert pod["spec"]["restartPolicy"] == "Never"
    (c,) = pod["spec"]["containers"]
    # Our own client, from the bench image: no shell, every option a flag.
    assert c["command"] == [
        "/usr/local/bin/bench", "check",
        f"--nsqd-tcp-address=nsq-nsqd.{NAMESPACE}.svc:4150",
        *[f"--lookupd-http-address={h}:4161" for h in lookupd_hosts(3)],
        "--timeout=90s",
    ]
    assert "args" not in c and "env" not in c
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    # Not part of the release's manifest (nor of deploy/manifests/nsq.yaml).
    assert "nsq-test-pub-sub" not in default.manifest


def test_helm_test_runs_the_bench_binary_with_its_timeout():
    bench = tomllib.loads((nsqchart.ROOT / "bench" / "Cargo.toml").read_text())
    assert [b["name"] for b in bench["bin"]] == ["bench"]
    r = render({"tests": {"timeoutSeconds": 1000000, "image": {"tag": "dev"}},
                "lookupd": {"replicas": 1}, "clusterDomain": "cluster.local"})
    c = helm_test_container(r)
    assert c["image"] == "nsq-rs/bench:dev"
    assert c["command"][-2:] == [
        "--lookupd-http-address=nsq-nsqlookupd-0.nsq-nsqlookupd.nsq.svc.cluster.local:4161",
        "--timeout=1000000s",
    ]


# -------------------------------------------------------------------- NOTES


def test_notes_tell_producers_consumers_and_topic_authors_where_to_go(default):
    notes = default.notes
    assert f"nsq-nsqd.{NAMESPACE}.svc:4150" in notes
    assert f"http://nsq-nsqd.{NAMESPACE}.svc:4151/pub?topic=" in notes
    for h in lookupd_hosts(3):
        assert f"http://{h}:4161" in notes
    assert "kind: NsqTopic" in notes and "kind: NsqChannel" in notes
    assert "kubectl apply -f -" in notes
    assert "helm test nsq" in notes
    # The example producer runs our own image, with a tag.
    assert "--image=nsq-rs/bench:0.1.0 --command -- \\\n    busybox wget" in notes


# ------------------------------------------------------ memory queue bytes


@pytest.mark.parametrize("limit, expected", [
    ("1Gi", "134217728"),
    ("512Mi", "67108864"),
    ("1.5Gi", "201326592"),
    ("2G", "250000000"),
    (1073741824, "134217728"),
])
def test_memory_limit_bounds_each_queue_to_an_eighth(limit, expected):
    r = render({"nsqd": {"resources": {"limits": {"memory": limit}}}})
    assert flag_values(r, "nsqd", "max-mem-queue-bytes") == [expected]


def test_no_memory_limit_no_byte_bound(default):
    # nsqd's behaviour: only mem-queue-size bounds the memory queues.
    assert flag_values(default, "nsqd", "max-mem-queue-bytes") == []


@pytest.mark.parametrize("nsqd, expected", [
    ({"maxMemQueueBytes": 1000000}, ["1000000"]),
    ({"maxMemQueueBytes": 0, "resources": {"limits": {"memory": "1Gi"}}}, []),
    ({"flags": {"max-mem-queue-bytes": 42}, "resources": {"limits": {"memory": "1Gi"}}}, ["42"]),
])
def test_explicit_byte_bounds_win(nsqd, expected):
    assert flag_values(render({"nsqd": nsqd}), "nsqd", "max-mem-queue-bytes") == expected


def test_schema_refuses_a_byte_bound_that_is_not_bytes():
    chart = helm_python.Chart.load(nsqchart.CHART_DIR)
    with pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema({"nsqd": {"maxMemQueueBytes": "lots"}})
