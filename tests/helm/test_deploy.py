"""deploy/ and the Dockerfile agree with the chart: the plain manifests are the
chart rendered with its defaults, and the images hold what the pods run."""

from __future__ import annotations

import fnmatch
import re
import tomllib

import pytest
import yaml

import nsqchart
from nsqchart import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def test_plain_manifests_are_the_chart_rendered_with_default_values():
    expected = nsqchart.manifests_text()
    actual = nsqchart.MANIFEST.read_text() if nsqchart.MANIFEST.exists() else ""
    assert actual == expected, "deploy/manifests/nsq.yaml is stale: run scripts/render-manifests"


def test_plain_manifests_hold_no_helm_test_hooks_or_crds():
    docs = nsqchart.parse_yaml_stream(nsqchart.MANIFEST.read_text())
    assert not [d for d in docs if "helm.sh/hook" in d["metadata"].get("annotations", {})]
    assert not [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    namespaced = [d for d in docs if d["kind"] not in
                  ("Namespace", "ClusterRole", "ClusterRoleBinding")]
    assert {d["metadata"]["namespace"] for d in namespaced} == {nsqchart.NAMESPACE}


def test_chart_dashboard_is_the_one_in_deploy_grafana():
    if not nsqchart.DASHBOARD_SOURCE.exists():
        assert not nsqchart.DASHBOARD_IN_CHART.exists(), \
            "charts/dashboards/nsq.json has no source in deploy/grafana/"
        pytest.skip("deploy/grafana/nsq.json does not exist yet")
    assert nsqchart.DASHBOARD_IN_CHART.exists() and \
        nsqchart.DASHBOARD_IN_CHART.read_bytes() == nsqchart.DASHBOARD_SOURCE.read_bytes(), \
        "charts/dashboards/nsq.json is stale: run scripts/render-manifests"


# --------------------------------------------------------------- Dockerfile


def stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            current = m.group(1) or f"stage{len(out)}"
            out[current] = [line]
        elif current:
            out[current].append(line)
    return out


def bin_names(crate: str) -> set[str]:
    manifest = tomllib.loads((ROOT / crate / "Cargo.toml").read_text())
    return {b["name"] for b in manifest.get("bin", [])}


IMAGES = {"nsqd": "broker", "nsqlookupd": "lookupd", "nsq-operator": "operator"}


@pytest.mark.parametrize("binary,crate", sorted(IMAGES.items()))
def test_each_image_runs_the_binary_its_stage_is_named_after(binary, crate):
    s = stages()
    assert binary in bin_names(crate)
    build = " ".join(s["build"])
    assert f"--bin {binary}" in build and f"target/release/{binary}" in build
    assert f'ENTRYPOINT ["/usr/local/bin/{binary}"]' in s[binary]
    assert f"COPY --from=build /out/{binary} /usr/local/bin/{binary}" in s[binary]


def test_helm_test_image_holds_the_bench_binary_its_hook_runs(default):
    (c,) = default.get("Pod", "nsq-test-pub-sub")["spec"]["containers"]
    assert c["image"].startswith("nsq-rs/bench:") and c["command"][0] == "/usr/local/bin/bench"
    assert "bench" in bin_names("bench")
    s = stages()
    if "bench" not in s:
        pytest.skip("the Dockerfile has no bench stage yet (the nsq-rs/bench image)")
    assert "--bin bench" in " ".join(s["build"])
    assert any(re.search(r"COPY --from=build \S*bench /usr/local/bin/bench$", i) for i in s["bench"])


def test_images_run_as_the_user_the_chart_sets():
    values = yaml.safe_load((nsqchart.CHART_DIR / "values.yaml").read_text())
    uid = values["podSecurityContext"]["runAsUser"]
    runtime = stages()["runtime"]
    assert f"USER {uid}:{uid}" in runtime
    assert ":nonroot" in runtime[0]


def test_broker_image_has_the_busybox_its_prestop_hook_calls(default):
    sts = default.get("StatefulSet", "nsq-nsqd")
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    hook = c["lifecycle"]["preStop"]["exec"]["command"]
    assert "COPY --from=busybox /bin/busybox /usr/local/bin/busybox" in stages()["nsqd"]
    assert hook[0] == "/usr/local/bin/busybox"
    busybox_from = stages()["busybox"][0]
    assert "-musl" in busybox_from, "the busybox must be static: the runtime has no libc for it"


def test_build_context_keeps_every_workspace_member():
    members = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    patterns = [p.strip().rstrip("/") for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    needed = ["Cargo.toml", "Cargo.lock"] + [f"{m}/Cargo.toml" for m in members] + \
        [f"{m}/src/main.rs" for m in members if (ROOT / m / "src/main.rs").exists()] + \
        [f"{m}/src/lib.rs" for m in members if (ROOT / m / "src/lib.rs").exists()]
    for path in needed:
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        excluded = [p for p in patterns for pre in prefixes if fnmatch.fnmatch(pre, p)]
        assert not excluded, f"{path} is excluded from the build context by {excluded}"
