"""`helm lint --strict` with the real Helm SDK."""

from __future__ import annotations

import helm_python
import pytest

import nsqchart
from conftest import VALUE_SETS, values

INFO, WARNING, ERROR = 1, 2, 3

# Findings accepted on purpose, each with its reason. Only severity INFO so far:
# strict lint fails on anything above, and there is nothing above to justify.
ACCEPTED_INFO = {
    # The project has no logo.
    "icon is recommended",
}


def lint(vals, kube_version=nsqchart.KUBE_VERSION):
    return helm_python.lint(nsqchart.CHART_DIR, vals, strict=True, kube_version=kube_version)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_strict_lint_finds_nothing_with_values(name):
    report = lint(values(name))
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    unexpected = [
        m for m in report["messages"]
        if m["severity"] > INFO or m["error"] not in ACCEPTED_INFO
    ]
    assert unexpected == []


@pytest.mark.parametrize("kube_version", ["v1.20.0", "v1.24.0", "v1.25.0", "v1.33.0"])
def test_strict_lint_finds_nothing_on_every_supported_kubernetes(kube_version):
    # Lint flags deprecated and removed APIs for the target version: the PDB
    # apiVersion switch must pick one that exists there.
    report = lint({}, kube_version=kube_version)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] > INFO] == []


def test_strict_lint_rejects_values_the_schema_forbids():
    report = lint({"nsqd": {"replica": 3}})
    assert report["errors"], "a misspelt key must fail lint through values.schema.json"


def test_sdk_install_renders_what_the_kube_version_aware_helper_renders():
    # nsqchart.install_dry_run() calls the C ABI directly to pass kube_version;
    # the public Config.install(dry_run="client") must agree with it wherever
    # the chart does not depend on the version (both are past 1.21 here).
    with helm_python.Config(namespace="nsq", storage_driver="memory") as cfg, \
            helm_python.Chart.load(nsqchart.CHART_DIR) as chart:
        public = cfg.install(chart, "nsq", {}, dry_run="client")
    assert public["manifest"] == nsqchart.install_dry_run({})["manifest"]
    assert public["notes"] == nsqchart.install_dry_run({})["notes"]
