"""Fixtures of the Helm chart tests: the value sets every test renders with, and
one real kube-apiserver per test session."""

from __future__ import annotations

import copy
import signal
import sys
from typing import Any, Iterator

import pytest

import nsqchart
from kube import ApiServer

# The values combinations the chart must render, lint and validate with.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "single-replicas": {
        "lookupd": {"replicas": 1},
        "nsqd": {"replicas": 1},
        "operator": {"replicas": 1},
    },
    "metrics-on": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
            "dashboard": {"enabled": True},
        },
    },
    "metrics-off": {
        "metrics": {"serviceMonitor": {"enabled": False}, "dashboard": {"enabled": False}},
    },
    "network-policy": {
        "networkPolicy": {
            "enabled": True,
            "clients": [{"namespaceSelector": {"matchLabels": {"nsq-client": "true"}}}],
            "metricsScrapers": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
            ],
        },
    },
    "network-policy-open": {"networkPolicy": {"enabled": True}},
    "custom-broker-flags": {
        "nsqd": {
            "flags": {
                "mem-queue-size": 0,
                "max-msg-size": 4194304,
                "max-body-size": 20971520,
                "msg-timeout": "2m30s",
                "max-bytes-per-file": 1073741824,
                "sync-every": None,
                "e2e-processing-latency-percentile": 0.99,
                "snappy": False,
            },
            "extraArgs": ["--max-channel-consumers=50"],
            "drainSeconds": 30,
            "terminationGracePeriodSeconds": 300,
        },
    },
    "operator-ha": {"operator": {"replicas": 2}},
    "operator-disabled": {"operator": {"enabled": False}, "networkPolicy": {"enabled": True},
                          "metrics": {"serviceMonitor": {"enabled": True}}},
    "operator-one-namespace": {"operator": {"watchNamespace": "apps"}},
    "fully-qualified-names": {"clusterDomain": "cluster.local"},
    "more-replicas": {"lookupd": {"replicas": 5}, "nsqd": {"replicas": 7}},
    # Broker TLS (test_tls.py): from an existing Secret, TCP must upgrade,
    # plain HTTP stays; auth servers asked with POST.
    "tls-secret": {
        "nsqd": {
            "tls": {"secretName": "nsq-broker-tls", "useCA": True,
                    "required": "tcp-https", "minVersion": "tls1.2"},
            "auth": {"httpAddresses": ["nsq-auth.auth.svc:4181", "https://auth.example.com/auth"],
                     "requestMethod": "post"},
        },
        "networkPolicy": {"enabled": True},
        "tests": {"authSecret": {"name": "nsq-auth", "key": "token"}},
    },
    # cert-manager issues the Secret; only HTTPS answers (so no operator).
    "tls-cert-manager": {
        "clusterDomain": "cluster.local",
        "nsqd": {"tls": {"required": True, "certManager": {
            "enabled": True, "issuerRef": {"name": "nsq-ca", "kind": "ClusterIssuer"}}}},
        "operator": {"enabled": False},
        "networkPolicy": {"enabled": True},
        "metrics": {"serviceMonitor": {"enabled": True}},
    },
    # Client certificates checked against the Secret's ca.crt.
    "tls-client-auth": {
        "nsqd": {"tls": {"secretName": "nsq-broker-tls", "useCA": True,
                         "clientAuthPolicy": "require-verify"}},
        "operator": {"enabled": False},
        "metrics": {"serviceMonitor": {"enabled": True}},
    },
}


def values(name: str) -> dict[str, Any]:
    return copy.deepcopy(VALUE_SETS[name])


@pytest.fixture(scope="session")
def rendered_sets() -> dict[str, nsqchart.Rendered]:
    return {name: nsqchart.render(v) for name, v in VALUE_SETS.items()}


@pytest.fixture(scope="session")
def default(rendered_sets: dict[str, nsqchart.Rendered]) -> nsqchart.Rendered:
    return rendered_sets["defaults"]


@pytest.fixture(scope="session")
def apiserver() -> Iterator[ApiServer]:
    """kube-apiserver 1.20 with etcd; no controllers, scheduler or kubelet, so
    objects are stored but pods never run."""
    server = ApiServer.start()
    # A terminated test run still stops etcd and the API server: SIGTERM
    # unwinds like Ctrl-C, through this fixture's finally.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        yield server
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
