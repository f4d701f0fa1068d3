"""`helm` install/upgrade/test/uninstall/list over helm-python-sdk (see scripts/helm)."""

import argparse
import json
import os
import re
import sys

import helm_python
import yaml


def seconds(text):
    """Go durations as helm takes them: 300, 300s, 5m, 1h30m."""
    if text.isdigit():
        return int(text)
    parts = re.findall(r"(\d+)([hms])", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise argparse.ArgumentTypeError(f"bad duration {text!r}")
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def set_value(values, assignment):
    key, _, raw = assignment.partition("=")
    value = yaml.safe_load(raw) if raw else ""
    *path, last = key.split(".")
    node = values
    for p in path:
        node = node.setdefault(p, {})
    node[last] = value


def main():
    p = argparse.ArgumentParser(prog="helm")
    p.add_argument("command", choices=["install", "upgrade", "test", "uninstall", "list"])
    p.add_argument("args", nargs="*")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    p.add_argument("--create-namespace", action="store_true")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--timeout", type=seconds, default=300)
    p.add_argument("-f", "--values", action="append", default=[])
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--logs", action="store_true")
    a = p.parse_args()

    values = {}
    for f in a.values:
        with open(f) as fh:
            values.update(yaml.safe_load(fh) or {})
    for s in a.set:
        set_value(values, s)
    wait = "watcher" if a.wait else None

    with helm_python.Config(kubeconfig_path=a.kubeconfig, namespace=a.namespace) as cfg:
        if a.command in ("install", "upgrade"):
            name, chart = a.args
            with helm_python.Chart.load(chart) as c:
                if a.command == "install":
                    r = cfg.install(c, name, values, namespace=a.namespace, timeout=a.timeout,
                                    wait=wait, create_namespace=a.create_namespace)
                else:
                    r = cfg.upgrade(c, name, values, namespace=a.namespace, timeout=a.timeout,
                                    wait=wait)
            print(f"NAME: {r['name']}\nNAMESPACE: {r['namespace']}\n"
                  f"STATUS: {r['status']}\nREVISION: {r['revision']}")
        elif a.command == "test":
            (name,) = a.args
            r = cfg.test(name, timeout=a.timeout, logs=a.logs)
            print(f"NAME: {name}\nTEST SUITE: passed")
            if a.logs and r.get("logs"):
                print(r["logs"])
        elif a.command == "uninstall":
            (name,) = a.args
            cfg.uninstall(name, wait=wait, timeout=a.timeout)
            print(f'release "{name}" uninstalled')
        else:
            print(json.dumps(cfg.list(), indent=2))


if __name__ == "__main__":
    try:
        main()
    except helm_python.HelmError as e:  # the SDK's errors carry helm's text
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(1)
