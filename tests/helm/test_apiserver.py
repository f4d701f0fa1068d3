"""The chart against a real kube-apiserver (1.20, from scripts/kube/): a
server-side dry run of every object, a real `helm install` (which creates the
CRDs from charts/crds/), the examples applied on top, and the operator's RBAC
asked of the API server's own authorizer.

There is no controller-manager, scheduler or kubelet: objects are stored, pods
never run, so nothing here waits for readiness (and `helm test` cannot run).
"""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

import nsqchart
from conftest import values
from kube import ApiError, ApiServer

RELEASE = "nsq"
NAMESPACE = "nsq-system"
EXAMPLES_NAMESPACE = "apps"
CRDS = ("nsqtopics.nsq.io", "nsqchannels.nsq.io")


def helm(api: ApiServer, namespace: str) -> helm_python.Config:
    return helm_python.Config(kubeconfig_path=api.kubeconfig, namespace=namespace)


def objects_of(release: dict[str, Any]) -> list[dict[str, Any]]:
    return nsqchart.parse_yaml_stream(release["manifest"])


@pytest.fixture(scope="module")
def installed(apiserver: ApiServer) -> dict[str, Any]:
    """`helm install nsq ./charts -n nsq-system --create-namespace` (no --wait)."""
    with helm(apiserver, NAMESPACE) as cfg, helm_python.Chart.load(nsqchart.CHART_DIR) as chart:
        release = cfg.install(chart, RELEASE, {}, create_namespace=True, timeout=120)
    assert release["status"] == "deployed"
    return release


def test_server_side_dry_run_accepts_every_object(apiserver: ApiServer):
    ns = "nsq-dry-run"
    apiserver.ensure_namespace(ns)
    with helm(apiserver, ns) as cfg, helm_python.Chart.load(nsqchart.CHART_DIR) as chart:
        release = cfg.install(chart, RELEASE, {}, dry_run="server")
    objs = objects_of(release)
    # Rendered against the server's discovery: 1.20 serves only policy/v1beta1.
    assert {o["apiVersion"] for o in objs if o["kind"] == "PodDisruptionBudget"} == {"policy/v1beta1"}
    # Helm's --dry-run=server renders with the server's capabilities but sends
    # nothing; send every object as `kubectl apply --dry-run=server` would.
    for obj in objs:
        try:
            apiserver.create(obj, dry_run=True)
        except ApiError as e:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} refused: {e}")
    # A dry run stores nothing.
    with pytest.raises(ApiError) as missing:
        apiserver.get(f"/apis/apps/v1/namespaces/{ns}/statefulsets/nsq-nsqd")
    assert missing.value.status == 404


# Broker TLS value sets, minus what this API server cannot hold: it has no
# Prometheus Operator or cert-manager CRDs, so ServiceMonitors stay off and a
# Certificate is left out (test_schemas.py checks its shape).
TLS_SETS = {
    "tls-secret": values("tls-secret"),
    "tls-client-auth": {**values("tls-client-auth"), "metrics": {"serviceMonitor": {"enabled": False}}},
    "tls-cert-manager": {**values("tls-cert-manager"), "metrics": {"serviceMonitor": {"enabled": False}}},
}


@pytest.mark.parametrize("name", sorted(TLS_SETS))
def test_server_side_dry_run_accepts_broker_tls_objects(apiserver: ApiServer, name: str):
    ns = f"nsq-dry-run-{name}"
    apiserver.ensure_namespace(ns)
    release = nsqchart.install_dry_run(TLS_SETS[name], namespace=ns, kube_version="v1.20.2")
    objs = [o for o in objects_of(release) if o["kind"] != "Certificate"]
    for obj in objs:
        try:
            apiserver.create(obj, dry_run=True)
        except ApiError as e:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} refused: {e}")
    (sts,) = [o for o in objs if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "nsq-nsqd"]
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    assert {p["name"] for p in c["ports"]} == {"tcp", "http", "https"}


def test_cert_manager_certificate_needs_cert_managers_crds(apiserver: ApiServer):
    # What `helm install` says on a cluster without cert-manager.
    ns = "nsq-no-cert-manager"
    apiserver.ensure_namespace(ns)
    with helm(apiserver, ns) as cfg, helm_python.Chart.load(nsqchart.CHART_DIR) as chart, \
            pytest.raises(helm_python.HelmError, match='no matches for kind "Certificate" in version "cert-manager.io/v1"'):
        cfg.install(chart, RELEASE, TLS_SETS["tls-cert-manager"], dry_run="server")


def test_install_creates_the_crds_and_every_object(apiserver: ApiServer, installed):
    def established(name: str) -> bool:
        crd = apiserver.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        return any(c["type"] == "Established" and c["status"] == "True"
                   for c in crd.get("status", {}).get("conditions", []))

    for name in CRDS:
        apiserver.wait_for(f"CRD {name} established", lambda: established(name))
    objs = objects_of(installed)
    assert {o["kind"] for o in objs} >= {
        "StatefulSet", "Deployment", "Service", "PodDisruptionBudget", "ServiceAccount",
        "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
    }
    for obj in objs:
        stored = apiserver.get(apiserver.path_of(obj, NAMESPACE))
        assert stored["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    sts = apiserver.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets/nsq-nsqd")
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--broadcast-address=$(POD_NAME).nsq-nsqd-headless.{NAMESPACE}.svc" in args
    # The API server kept the fields a 1.20 server knows (nothing pruned).
    pod = sts["spec"]["template"]["spec"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["containers"][0]["startupProbe"]["httpGet"]["path"] == "/ping"
    assert pod["terminationGracePeriodSeconds"] == 120


def apply(api: ApiServer, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    """`kubectl apply --server-side`."""
    path = api.path_of(obj, namespace) + "?fieldManager=nsq-helm-tests&force=true"
    applied: dict[str, Any] = api.request("PATCH", path, obj, "application/apply-patch+yaml")
    return applied


def test_examples_apply_once_the_chart_is_installed(apiserver: ApiServer, installed):
    from test_schemas import EXAMPLES

    apiserver.ensure_namespace(EXAMPLES_NAMESPACE)
    applied = []
    # Topics first: a channel may refer to one.
    docs = [d for p in EXAMPLES for d in nsqchart.parse_yaml_stream(p.read_text())]
    for obj in sorted(docs, key=lambda d: d["kind"] != "NsqTopic"):
        stored = apply(apiserver, obj, EXAMPLES_NAMESPACE)
        assert stored["spec"] == obj["spec"], f"{obj['kind']}: the API server changed the spec"
        applied.append((obj["kind"], stored["metadata"]["name"]))
    assert {k for k, _ in applied} == {"NsqTopic", "NsqChannel"}
    topics = apiserver.get(f"/apis/nsq.io/v1alpha1/namespaces/{EXAMPLES_NAMESPACE}/nsqtopics")
    assert [t["metadata"]["name"] for t in topics["items"]] == [
        n for k, n in applied if k == "NsqTopic"
    ]


def test_api_server_refuses_a_topic_nsq_would_refuse(apiserver: ApiServer, installed):
    apiserver.ensure_namespace(EXAMPLES_NAMESPACE)
    bad = {"apiVersion": "nsq.io/v1alpha1", "kind": "NsqTopic",
           "metadata": {"name": "bad"}, "spec": {"topicName": "has spaces"}}
    with pytest.raises(ApiError) as refused:
        apiserver.create(bad, EXAMPLES_NAMESPACE)
    assert refused.value.status == 422


# What the operator's ServiceAccount may and may not do, asked of the API
# server's RBAC authorizer (SubjectAccessReview): (verb, group, resource,
# subresource, namespace, name).
ALLOWED = [
    ("list", "nsq.io", "nsqtopics", "", EXAMPLES_NAMESPACE, ""),
    ("watch", "nsq.io", "nsqchannels", "", EXAMPLES_NAMESPACE, ""),
    ("get", "nsq.io", "nsqtopics", "", EXAMPLES_NAMESPACE, "orders"),
    ("patch", "nsq.io", "nsqchannels", "", EXAMPLES_NAMESPACE, "orders-billing"),
    ("patch", "nsq.io", "nsqtopics", "status", EXAMPLES_NAMESPACE, "orders"),
    ("patch", "nsq.io", "nsqchannels", "status", EXAMPLES_NAMESPACE, "orders-billing"),
    ("create", "events.k8s.io", "events", "", EXAMPLES_NAMESPACE, ""),
    ("patch", "events.k8s.io", "events", "", EXAMPLES_NAMESPACE, "orders.1"),
    ("create", "coordination.k8s.io", "leases", "", NAMESPACE, ""),
    ("get", "coordination.k8s.io", "leases", "", NAMESPACE, "nsq-operator"),
    ("update", "coordination.k8s.io", "leases", "", NAMESPACE, "nsq-operator"),
]
DENIED = [
    ("create", "nsq.io", "nsqtopics", "", EXAMPLES_NAMESPACE, ""),
    ("delete", "nsq.io", "nsqtopics", "", EXAMPLES_NAMESPACE, "orders"),
    ("update", "nsq.io", "nsqtopics", "", EXAMPLES_NAMESPACE, "orders"),
    ("update", "nsq.io", "nsqtopics", "finalizers", EXAMPLES_NAMESPACE, "orders"),
    ("update", "nsq.io", "nsqtopics", "status", EXAMPLES_NAMESPACE, "orders"),
    ("get", "", "secrets", "", NAMESPACE, ""),
    ("list", "", "pods", "", NAMESPACE, ""),
    ("create", "", "events", "", EXAMPLES_NAMESPACE, ""),
    ("delete", "events.k8s.io", "events", "", EXAMPLES_NAMESPACE, "orders.1"),
    ("update", "coordination.k8s.io", "leases", "", NAMESPACE, "someone-elses-lease"),
    ("delete", "coordination.k8s.io", "leases", "", NAMESPACE, "nsq-operator"),
    ("create", "coordination.k8s.io", "leases", "", EXAMPLES_NAMESPACE, ""),
    ("update", "apiextensions.k8s.io", "customresourcedefinitions", "", "", CRDS[0]),
]


def allowed(api: ApiServer, verb, group, resource, subresource, namespace, name) -> bool:
    sa = f"system:serviceaccount:{NAMESPACE}:nsq-operator"
    review = api.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": sa,
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}",
                       "system:authenticated"],
            "resourceAttributes": {
                "verb": verb, "group": group, "resource": resource,
                "subresource": subresource, "namespace": namespace, "name": name,
            },
        },
    })
    return bool(review["status"].get("allowed"))


@pytest.mark.parametrize("attrs", ALLOWED, ids=lambda a: "-".join(x for x in a[:4] if x))
def test_operator_service_account_may_do_its_job(apiserver: ApiServer, installed, attrs):
    assert allowed(apiserver, *attrs)


@pytest.mark.parametrize("attrs", DENIED, ids=lambda a: "-".join(x for x in a[:4] if x))
def test_operator_service_account_may_do_nothing_else(apiserver: ApiServer, installed, attrs):
    assert not allowed(apiserver, *attrs)
