"""Schemas: every rendered object against Kubernetes' own (kubernetes-validate
--strict: unknown fields are errors), and the examples in deploy/examples/
against the CRDs' openAPIV3Schema."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

import nsqchart
from conftest import VALUE_SETS, values
from nsqchart import ROOT

EXAMPLES = sorted((ROOT / "deploy" / "examples").glob("*.yaml"))
CHART_CRDS = sorted((nsqchart.CHART_DIR / "crds").glob("*.yaml"))

# Kinds kubernetes-validate has no schema for: they come from CRDs that are
# not part of Kubernetes. The Prometheus Operator's ServiceMonitor is checked
# for shape in test_values.py instead; cert-manager's Certificate against
# CERTIFICATE_SCHEMA below.
NOT_IN_KUBERNETES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("cert-manager.io/v1", "Certificate"),
}

# A minimal schema for cert-manager v1's Certificate: the fields the chart
# renders, with the names, types and enums of its CRD
# (certificates.cert-manager.io), strict about unknown fields so a typo fails
# here rather than being pruned by the API server.
CERTIFICATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "cert-manager.io/v1"},
        "kind": {"const": "Certificate"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["secretName", "issuerRef"],
            "additionalProperties": False,
            "properties": {
                "secretName": {"type": "string", "minLength": 1},
                "issuerRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {"name": {"type": "string", "minLength": 1},
                                   "kind": {"type": "string"}, "group": {"type": "string"}},
                },
                "dnsNames": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "usages": {"type": "array", "items": {"enum": [
                    "signing", "digital signature", "content commitment", "key encipherment",
                    "key agreement", "data encipherment", "cert sign", "crl sign",
                    "encipher only", "decipher only", "any", "server auth", "client auth",
                    "code signing", "email protection", "s/mime", "ipsec end system",
                    "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
                    "microsoft sgc", "netscape sgc"]}},
                "privateKey": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                        "size": {"type": "integer"},
                        "encoding": {"enum": ["PKCS1", "PKCS8"]},
                        "rotationPolicy": {"enum": ["Never", "Always"]},
                    },
                },
                "duration": {"type": "string"},
                "renewBefore": {"type": "string"},
            },
        },
    },
}


def validate_k8s(obj: dict[str, Any], version: str) -> None:
    if (obj["apiVersion"], obj["kind"]) == ("cert-manager.io/v1", "Certificate"):
        errors = sorted(jsonschema.Draft7Validator(CERTIFICATE_SCHEMA).iter_errors(obj), key=str)
        if errors:
            pytest.fail("\n".join(f"Certificate/{obj['metadata']['name']} at "
                                   f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                                   for e in errors))
        return
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        if (obj["apiVersion"], obj["kind"]) not in NOT_IN_KUBERNETES:
            raise
    except kubernetes_validate.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path)
        pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} at {where}: {e.message}")


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_rendered_object_is_valid_kubernetes_1_30(rendered_sets, name):
    r = rendered_sets[name]
    assert r.all()
    for obj in r.all():
        validate_k8s(obj, "1.30")


@pytest.mark.parametrize("kube_version", ["v1.25.0", "v1.37.0"])
def test_default_objects_are_valid_on_the_oldest_and_newest_known_kubernetes(kube_version):
    r = nsqchart.render({}, kube_version=kube_version)
    for obj in r.all():
        validate_k8s(obj, kube_version[1:])


def test_plain_manifests_are_valid_kubernetes_1_30():
    docs = nsqchart.parse_yaml_stream(nsqchart.MANIFEST.read_text())
    assert docs[0]["kind"] == "Namespace"
    for obj in docs:
        validate_k8s(obj, "1.30")


# ------------------------------------------------------------------ the CRDs


def load_crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(group, kind) -> CRD, from charts/crds/."""
    crds = {}
    for path in CHART_CRDS:
        crd = yaml.safe_load(path.read_text())
        crds[(crd["spec"]["group"], crd["spec"]["names"]["kind"])] = crd
    return crds


def strict_json_schema(schema: dict[str, Any], root: bool = True) -> dict[str, Any]:
    """An openAPIV3Schema as the API server applies it, in JSON Schema terms:
    `nullable` becomes a null type, and fields the schema does not declare are
    errors (the API server would silently prune them, hiding a typo)."""
    s = copy.deepcopy(schema)
    if s.pop("nullable", False) and "type" in s:
        s["type"] = [s["type"], "null"]
    for key in ("properties", "patternProperties"):
        for name, sub in s.get(key, {}).items():
            s[key][name] = strict_json_schema(sub, root=False)
    if isinstance(s.get("items"), dict):
        s["items"] = strict_json_schema(s["items"], root=False)
    if isinstance(s.get("additionalProperties"), dict):
        s["additionalProperties"] = strict_json_schema(s["additionalProperties"], root=False)
    for key in ("allOf", "anyOf", "oneOf"):
        if key in s:
            s[key] = [strict_json_schema(x, root=False) for x in s[key]]
    if ("properties" in s and "additionalProperties" not in s
            and not s.get("x-kubernetes-preserve-unknown-fields")):
        if root:
            s["properties"] = {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "metadata": {"type": "object"}, **s["properties"],
            }
        s["additionalProperties"] = False
    return s


def crd_validator(obj: dict[str, Any]) -> jsonschema.Validator:
    group, version = obj["apiVersion"].split("/")
    crd = load_crds()[(group, obj["kind"])]
    (v,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    assert v["served"], f"{obj['apiVersion']} {obj['kind']} is not served"
    schema = strict_json_schema(v["schema"]["openAPIV3Schema"])
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_there_are_examples_of_both_resources():
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in EXAMPLES}
    assert kinds == {"NsqTopic", "NsqChannel"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_matches_its_crd_schema(path: Path):
    for obj in nsqchart.parse_yaml_stream(path.read_text()):
        errors = sorted(crd_validator(obj).iter_errors(obj), key=str)
        assert not errors, "\n".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
        )


@pytest.mark.parametrize("kind,spec", [
    ("NsqTopic", {"topicName": "no spaces allowed"}),
    ("NsqTopic", {"topicName": "x" * 65}),
    ("NsqTopic", {"deletionPolicy": "Archive"}),
    ("NsqTopic", {"paused": "yes"}),
    ("NsqTopic", {"topicNmae": "typo"}),
    ("NsqChannel", {"topicName": "orders", "channelName": "bad/name"}),
])
def test_crd_schema_refuses_broken_resources(kind, spec):
    obj = {"apiVersion": "nsq.io/v1alpha1", "kind": kind, "metadata": {"name": "x"}, "spec": spec}
    assert list(crd_validator(obj).iter_errors(obj)), f"{kind} {spec} should be refused"


def test_chart_crds_are_the_generated_ones_in_deploy():
    deploy = {p.name: p.read_text() for p in (ROOT / "deploy" / "crds").glob("*.yaml")}
    chart = {p.name: p.read_text() for p in CHART_CRDS}
    assert set(chart) == {"nsqtopics.nsq.io.yaml", "nsqchannels.nsq.io.yaml"}
    assert chart == deploy, "charts/crds/ and deploy/crds/ differ: run `cargo run -p nsq-operator --bin crdgen`"


def test_crds_are_valid_kubernetes_1_30():
    for path in CHART_CRDS:
        validate_k8s(yaml.safe_load(path.read_text()), "1.30")


def test_values_schema_accepts_every_tested_combination():
    import helm_python

    with helm_python.Chart.load(nsqchart.CHART_DIR) as chart:
        for name in VALUE_SETS:
            chart.validate_schema(values(name))
