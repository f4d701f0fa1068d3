"""Broker TLS and auth (nsqd.tls, nsqd.auth): the flags nsqd gets, where its
certificate comes from and is mounted, the ports that open, how the kubelet,
the preStop hook, Prometheus and `helm test` still reach a broker that refuses
plain HTTP, and the combinations the chart refuses.

Every value set here also goes through lint, schema validation and the shared
checks of test_values.py through conftest.VALUE_SETS (tls-*)."""

from __future__ import annotations

import re
from typing import Any

import helm_python
import pytest

import nsqchart
from nsqchart import NAMESPACE, Rendered, render
from test_values import args, container, flag_values, pod_spec, policy_peers

TLS_DIR = "/etc/nsqd/tls"
SECRET = "nsq-broker-tls"
# The chart's TLS and auth flags, in the order it renders them.
TLS_FLAGS = ("https-address", "tls-cert", "tls-key", "tls-root-ca-file", "tls-required",
             "tls-client-auth-policy", "tls-min-version", "auth-http-address",
             "auth-http-request-method")


def tls_args(r: Rendered) -> list[str]:
    return [a for a in args(r, "nsqd") if a.split("=", 1)[0][2:] in TLS_FLAGS]


def with_tls(tls: dict[str, Any], **more: Any) -> dict[str, Any]:
    """Values with nsqd.tls = tls (from the existing Secret unless tls names
    another source); the operator off unless `more` says otherwise."""
    v: dict[str, Any] = {"nsqd": {"tls": {"secretName": SECRET, **tls}}, "operator": {"enabled": False}}
    if "certManager" in tls:
        del v["nsqd"]["tls"]["secretName"]
    v.update(more)
    return v


def probes(r: Rendered) -> dict[str, dict[str, Any]]:
    c = container(r, "nsqd")
    return {p: {k: v for k, v in c[p].items() if k in ("httpGet", "tcpSocket")}
            for p in ("startupProbe", "readinessProbe", "livenessProbe")}


def prestop_script(r: Rendered) -> str:
    command = container(r, "nsqd")["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:3] == ["/usr/local/bin/busybox", "sh", "-c"]
    return command[3]


def hook_container(r: Rendered) -> dict[str, Any]:
    (c,) = r.get("Pod", "nsq-test-pub-sub")["spec"]["containers"]
    return c


HTTP_PROBE = {"httpGet": {"path": "/ping", "port": "http"}}
HTTPS_PROBE = {"httpGet": {"path": "/ping", "port": "https", "scheme": "HTTPS"}}
TCP_PROBE = {"tcpSocket": {"port": "https"}}


# ------------------------------------------------------------------ TLS off


@pytest.mark.parametrize("name", ["defaults", "custom-broker-flags", "network-policy", "metrics-on"])
def test_without_a_certificate_nothing_tls_is_rendered(rendered_sets, name):
    r = rendered_sets[name]
    assert tls_args(r) == []
    assert not r.of_kind("Certificate")
    c = container(r, "nsqd")
    assert [p["name"] for p in c["ports"]] == ["tcp", "http"]
    assert [m["name"] for m in c["volumeMounts"]] == ["data"]
    assert "volumes" not in pod_spec(r, "nsqd")
    for svc in ("nsq-nsqd", "nsq-nsqd-headless"):
        assert [p["name"] for p in r.get("Service", svc)["spec"]["ports"]] == ["tcp", "http"]
    assert probes(r) == {p: HTTP_PROBE for p in probes(r)}
    assert "nc 127.0.0.1 4151" in prestop_script(r)
    script = hook_container(r)["command"][-1]
    assert "-producer-opt" not in script and "tls_v1" not in script
    assert "https://" not in r.notes


# ----------------------------------------------------- TLS from a Secret


def test_existing_secret_is_mounted_read_only_and_named_in_the_flags(rendered_sets):
    r = rendered_sets["tls-secret"]
    assert tls_args(r) == [
        "--https-address=0.0.0.0:4152",
        f"--tls-cert={TLS_DIR}/tls.crt",
        f"--tls-key={TLS_DIR}/tls.key",
        f"--tls-root-ca-file={TLS_DIR}/ca.crt",
        "--tls-required=tcp-https",
        "--tls-min-version=tls1.2",
        "--auth-http-address=nsq-auth.auth.svc:4181",
        "--auth-http-address=https://auth.example.com/auth",
        "--auth-http-request-method=post",
    ]
    assert pod_spec(r, "nsqd")["volumes"] == [{"name": "tls", "secret": {"secretName": SECRET}}]
    assert container(r, "nsqd")["volumeMounts"] == [
        {"name": "data", "mountPath": "/data"},
        {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
    ]
    assert not r.of_kind("Certificate")


def test_without_use_ca_there_is_no_root_ca_flag():
    r = render(with_tls({}))
    assert tls_args(r) == ["--https-address=0.0.0.0:4152", f"--tls-cert={TLS_DIR}/tls.crt",
                           f"--tls-key={TLS_DIR}/tls.key"]


def test_https_port_opens_on_the_broker_and_both_services(rendered_sets):
    r = rendered_sets["tls-secret"]
    assert {p["name"]: p["containerPort"] for p in container(r, "nsqd")["ports"]} == \
        {"tcp": 4150, "http": 4151, "https": 4152}
    for svc in ("nsq-nsqd", "nsq-nsqd-headless"):
        ports = {p["name"]: (p["port"], p["targetPort"]) for p in r.get("Service", svc)["spec"]["ports"]}
        assert ports == {"tcp": (4150, "tcp"), "http": (4151, "http"), "https": (4152, "https")}


def test_network_policy_admits_https_from_clients_operator_tests_and_scrapers(rendered_sets):
    for name in ("tls-secret", "tls-cert-manager"):
        policy = rendered_sets[name].get("NetworkPolicy", "nsq-nsqd")
        assert policy_peers(policy, "https") == policy_peers(policy, "http")
        rules = policy["spec"]["ingress"]
        assert [[p["port"] for p in rule["ports"]] for rule in rules] == \
            [["tcp", "http", "https"], ["http", "https"]]


# ------------------------------------------------------------ cert-manager


def test_cert_manager_certificate_covers_the_service_and_every_broker(rendered_sets):
    r = rendered_sets["tls-cert-manager"]
    (cert,) = r.of_kind("Certificate")
    assert cert["apiVersion"] == "cert-manager.io/v1"
    assert cert["metadata"]["name"] == "nsq-nsqd"
    assert cert["metadata"]["namespace"] == NAMESPACE
    spec = cert["spec"]
    assert spec["secretName"] == "nsq-nsqd-tls"
    assert spec["issuerRef"] == {"name": "nsq-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert spec["dnsNames"] == [
        "nsq-nsqd", f"nsq-nsqd.{NAMESPACE}", f"nsq-nsqd.{NAMESPACE}.svc",
        f"*.nsq-nsqd-headless.{NAMESPACE}.svc",
        f"nsq-nsqd.{NAMESPACE}.svc.cluster.local",
        f"*.nsq-nsqd-headless.{NAMESPACE}.svc.cluster.local",
    ]
    assert spec["usages"] == ["digital signature", "key encipherment", "server auth", "client auth"]
    assert spec["privateKey"] == {"algorithm": "RSA", "size": 2048, "rotationPolicy": "Always"}
    assert "duration" not in spec and "renewBefore" not in spec
    # The brokers mount what the Certificate issues.
    assert pod_spec(r, "nsqd")["volumes"] == [{"name": "tls", "secret": {"secretName": "nsq-nsqd-tls"}}]


def test_every_broadcast_name_is_covered_by_the_certificate(rendered_sets):
    r = rendered_sets["tls-cert-manager"]
    names = r.get("Certificate", "nsq-nsqd")["spec"]["dnsNames"]
    (broadcast,) = flag_values(r, "nsqd", "broadcast-address")
    for i in range(r.get("StatefulSet", "nsq-nsqd")["spec"]["replicas"]):
        host = broadcast.replace("$(POD_NAME)", f"nsq-nsqd-{i}")
        assert any(n == host or (n.startswith("*.") and host.split(".", 1)[1] == n[2:])
                   for n in names), host


def test_certificate_without_cluster_domain_and_with_options():
    r = render(with_tls({"certManager": {
        "enabled": True, "issuerRef": {"name": "ca"}, "duration": "2160h", "renewBefore": "360h",
        "privateKey": {"algorithm": "ECDSA", "size": 256},
        "extraDnsNames": ["nsq.example.com", "nsq-nsqd"]}}))
    spec = r.get("Certificate", "nsq-nsqd")["spec"]
    assert spec["issuerRef"] == {"name": "ca", "kind": "Issuer", "group": "cert-manager.io"}
    assert spec["dnsNames"] == ["nsq-nsqd", f"nsq-nsqd.{NAMESPACE}", f"nsq-nsqd.{NAMESPACE}.svc",
                                f"*.nsq-nsqd-headless.{NAMESPACE}.svc", "nsq.example.com"]
    assert spec["duration"] == "2160h" and spec["renewBefore"] == "360h"
    assert spec["privateKey"] == {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"}


# ------------------------------------------------------------ tls.required


WAIT_ONLY = "bb=/usr/local/bin/busybox; $bb sleep 15"


@pytest.mark.parametrize("required,flag,probe,leaves_lookupd", [
    # TLS offered: plain HTTP still answers the kubelet and the hook.
    ("false", None, HTTP_PROBE, True),
    (False, None, HTTP_PROBE, True),
    # TCP clients must upgrade; HTTP stays open.
    ("tcp-https", "tcp-https", HTTP_PROBE, True),
    # Plain HTTP answers 403 TLS_REQUIRED: the kubelet moves to HTTPS 4152;
    # the hook, whose busybox cannot speak HTTPS to rustls, only waits.
    ("true", "true", HTTPS_PROBE, False),
    (True, "true", HTTPS_PROBE, False),
])
def test_required_mode_sets_the_flag_and_how_the_broker_is_checked(required, flag, probe, leaves_lookupd):
    r = render(with_tls({"required": required}))
    assert flag_values(r, "nsqd", "tls-required") == ([flag] if flag else [])
    assert probes(r) == {p: probe for p in probes(r)}
    script = prestop_script(r)
    if leaves_lookupd:
        assert "PUT /config/nsqlookupd_tcp_addresses" in script
        assert "nc 127.0.0.1 4151" in script and "4152" not in script
        assert script.rstrip().endswith("sleep 15")
    else:
        assert script == WAIT_ONLY
    # The grace period still covers the wait and the flush.
    assert pod_spec(r, "nsqd")["terminationGracePeriodSeconds"] == 120


def test_min_version_reaches_nsqd_and_leaves_http_brokers_hook_alone():
    r = render(with_tls({"required": "tcp-https", "minVersion": "tls1.3"}))
    assert flag_values(r, "nsqd", "tls-min-version") == ["tls1.3"]
    assert "nc 127.0.0.1 4151" in prestop_script(r)


# ------------------------------------------------------- client certificates


@pytest.mark.parametrize("policy", ["require", "require-verify"])
def test_client_certificate_policy_implies_required_and_tcp_probes(policy):
    r = render(with_tls({"clientAuthPolicy": policy}))
    assert tls_args(r)[-2:] == ["--tls-required=true", f"--tls-client-auth-policy={policy}"]
    # HTTPS wants a certificate the kubelet cannot show.
    assert probes(r) == {p: TCP_PROBE for p in probes(r)}
    # Plain HTTP is refused: the hook only waits; nsqd leaves lookupd at SIGTERM.
    assert prestop_script(r) == WAIT_ONLY
    assert f"client certificate ({policy})" in r.notes


def test_client_auth_set_uses_the_ca_and_scrapes_with_the_brokers_certificate(rendered_sets):
    r = rendered_sets["tls-client-auth"]
    assert tls_args(r) == [
        "--https-address=0.0.0.0:4152", f"--tls-cert={TLS_DIR}/tls.crt",
        f"--tls-key={TLS_DIR}/tls.key", f"--tls-root-ca-file={TLS_DIR}/ca.crt",
        "--tls-required=true", "--tls-client-auth-policy=require-verify",
    ]
    (endpoint,) = r.get("ServiceMonitor", "nsq-nsqd")["spec"]["endpoints"]
    assert endpoint["port"] == "https" and endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {
        "insecureSkipVerify": True,
        "cert": {"secret": {"name": SECRET, "key": "tls.crt"}},
        "keySecret": {"name": SECRET, "key": "tls.key"},
    }


# ----------------------------------------------------------------- metrics


def test_brokers_refusing_http_are_scraped_over_https(rendered_sets):
    r = rendered_sets["tls-cert-manager"]
    (endpoint,) = r.get("ServiceMonitor", "nsq-nsqd")["spec"]["endpoints"]
    assert endpoint == {"port": "https", "scheme": "https", "path": "/metrics",
                        "interval": "30s", "scrapeTimeout": "10s",
                        "tlsConfig": {"insecureSkipVerify": True}}
    headless = r.get("Service", "nsq-nsqd-headless")
    assert "https" in {p["name"] for p in headless["spec"]["ports"]}
    (lookupd,) = r.get("ServiceMonitor", "nsq-nsqlookupd")["spec"]["endpoints"]
    assert lookupd["port"] == "http" and "scheme" not in lookupd


def test_brokers_with_http_open_are_scraped_as_before():
    r = render(with_tls({"required": "tcp-https"}, metrics={"serviceMonitor": {"enabled": True}}))
    (endpoint,) = r.get("ServiceMonitor", "nsq-nsqd")["spec"]["endpoints"]
    assert endpoint["port"] == "http" and "tlsConfig" not in endpoint


# ---------------------------------------------------------------- auth


def test_auth_servers_default_to_get():
    r = render({"nsqd": {"auth": {"httpAddresses": ["auth:4181"]}}})
    assert tls_args(r) == ["--auth-http-address=auth:4181", "--auth-http-request-method=get"]
    assert "TCP clients must AUTH (auth servers: auth:4181)" in r.notes


# ---------------------------------------------------------------- helm test


def hook_flags(c: dict[str, Any]) -> list[str]:
    """The flags after `bench check` and its addresses and timeout."""
    assert c["command"][:2] == ["/usr/local/bin/bench", "check"]
    return [f for f in c["command"][2:]
            if not f.startswith(("--nsqd-tcp-address=", "--lookupd-http-address=", "--timeout="))]


def test_helm_test_upgrades_to_tls_and_sends_the_auth_secret(rendered_sets):
    c = hook_container(rendered_sets["tls-secret"])
    assert hook_flags(c) == ["--tls", "--tls-insecure-skip-verify"]
    # The secret reaches `bench check` through its environment, not its command line.
    (env,) = c["env"]
    assert env == {"name": "NSQ_AUTH_SECRET",
                   "valueFrom": {"secretKeyRef": {"name": "nsq-auth", "key": "token"}}}
    assert not [f for f in c["command"] if "auth" in f]
    assert "volumeMounts" not in c


def test_helm_test_shows_the_brokers_certificate_when_they_want_one(rendered_sets):
    r = rendered_sets["tls-client-auth"]
    pod = r.get("Pod", "nsq-test-pub-sub")
    (c,) = pod["spec"]["containers"]
    assert hook_flags(c) == [
        "--tls", "--tls-insecure-skip-verify",
        "--tls-cert=/etc/nsq-tls/tls.crt", "--tls-key=/etc/nsq-tls/tls.key",
    ]
    assert c["volumeMounts"] == [{"name": "tls", "mountPath": "/etc/nsq-tls", "readOnly": True}]
    assert pod["spec"]["volumes"] == [{"name": "tls", "secret": {"secretName": SECRET}}]


# -------------------------------------------------------------------- NOTES


def test_notes_give_the_https_address_and_drop_http_when_it_is_refused(rendered_sets):
    svc = f"nsq-nsqd.{NAMESPACE}.svc"
    notes = rendered_sets["tls-secret"].notes
    assert f"https://{svc}:4152/pub?topic=<topic>" in notes
    assert f"http://{svc}:4151/pub?topic=<topic>" in notes
    assert "(TLS required: tls_v1 in IDENTIFY)" in notes
    notes = rendered_sets["tls-cert-manager"].notes
    assert f"https://{svc}.cluster.local:4152/pub?topic=<topic>" in notes
    assert ":4151/pub" not in notes
    assert "--tls --tls-insecure-skip-verify" in notes


# ------------------------------------------------------- refused combinations


@pytest.mark.parametrize("vals,message", [
    ({"nsqd": {"tls": {"required": "true"}}}, "nsqd.tls.required=true needs a certificate"),
    ({"nsqd": {"tls": {"required": "tcp-https"}}}, "nsqd.tls.required=tcp-https needs a certificate"),
    ({"nsqd": {"tls": {"clientAuthPolicy": "require"}}},
     "nsqd.tls.clientAuthPolicy=require needs a certificate"),
    ({"nsqd": {"tls": {"minVersion": "tls1.2"}}}, "nsqd.tls.minVersion needs a certificate"),
    ({"nsqd": {"tls": {"useCA": True}}}, "nsqd.tls.useCA reads ca.crt from the TLS Secret"),
    ({"nsqd": {"tls": {"secretName": "x", "certManager": {"enabled": True, "issuerRef": {"name": "ca"}}}}},
     "set either secretName"),
    ({"nsqd": {"tls": {"certManager": {"enabled": True}}}},
     "needs nsqd.tls.certManager.issuerRef.name"),
    ({"nsqd": {"tls": {"certManager": {"enabled": True, "issuerRef": {"name": "ca"},
                                       "privateKey": {"algorithm": "ECDSA"}}}}},
     "ECDSA keys are 256, 384 or 521 bits, not 2048"),
])
def test_invalid_tls_combinations_are_refused_with_a_reason(vals, message):
    with pytest.raises(helm_python.HelmError, match=re.escape(message)):
        render(vals)


def operator_container(r: Rendered) -> dict[str, Any]:
    (c,) = r.get("Deployment", "nsq-operator")["spec"]["template"]["spec"]["containers"]
    return c


@pytest.mark.parametrize("tls, args", [
    ({"required": "tcp-https"}, []),
    ({"required": "true"}, []),
    ({"required": "true", "useCA": True},
     ["--http-client-tls-root-ca-file=/etc/nsq-operator/tls/ca.crt"]),
    ({"clientAuthPolicy": "require-verify", "useCA": True},
     ["--http-client-tls-root-ca-file=/etc/nsq-operator/tls/ca.crt",
      "--http-client-tls-cert=/etc/nsq-operator/tls/tls.crt",
      "--http-client-tls-key=/etc/nsq-operator/tls/tls.key"]),
])
def test_operator_reaches_brokers_that_refuse_plain_http_over_https(tls, args):
    r = render({"nsqd": {"tls": {"secretName": SECRET, **tls}}})
    c = operator_container(r)
    got = [a for a in c["args"] if a.startswith("--http-client-tls")]
    assert got == args
    pod = r.get("Deployment", "nsq-operator")["spec"]["template"]["spec"]
    if tls.get("required") == "true" or tls.get("clientAuthPolicy"):
        assert c["volumeMounts"] == [
            {"name": "nsqd-tls", "mountPath": "/etc/nsq-operator/tls", "readOnly": True}]
        assert pod["volumes"] == [{"name": "nsqd-tls", "secret": {"secretName": SECRET}}]
    else:
        assert "volumeMounts" not in c and "volumes" not in pod


@pytest.mark.parametrize("bad", [
    {"nsqd": {"tls": {"required": "yes"}}},
    {"nsqd": {"tls": {"clientAuthPolicy": "optional"}}},
    {"nsqd": {"tls": {"minVersion": "tls1.4"}}},
    {"nsqd": {"tls": {"secretName": "Not_A_Name"}}},
    {"nsqd": {"tls": {"certificate": "x"}}},
    {"nsqd": {"tls": {"certManager": {"issuerRef": {"nmae": "ca"}}}}},
    {"nsqd": {"tls": {"certManager": {"privateKey": {"algorithm": "Ed448"}}}}},
    {"nsqd": {"auth": {"requestMethod": "put"}}},
    {"nsqd": {"auth": {"httpAddresses": "auth:4181"}}},
    {"nsqd": {"flags": {"tls-cert": "/x"}}},
    {"nsqd": {"flags": {"auth-http-address": "auth:4181"}}},
    {"tests": {"authSecret": {"name": "x", "ky": "y"}}},
])
def test_schema_refuses_mistaken_tls_values(bad):
    chart = helm_python.Chart.load(nsqchart.CHART_DIR)
    with pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema(bad)

