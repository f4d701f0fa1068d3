"""Cluster DNS for scripts/cluster: keeps a hosts file for dnsmasq in step with
the API's Services and Endpoints (CoreDNS is not packaged in Debian 12).

usage: cluster-dns.py KUBECTL KUBECONFIG HOSTS_FILE DNSMASQ_PIDFILE

Names, as the Kubernetes DNS spec gives them (A records only):
  <svc>.<ns>.svc.cluster.local             the ClusterIP, or every ready
                                           endpoint of a headless Service
  <hostname>.<svc>.<ns>.svc.cluster.local  a headless Service's endpoint with
                                           a hostname (StatefulSet pods)
Polls once a second; on a change rewrites the file and sends dnsmasq SIGHUP.
"""

import json
import os
import signal
import subprocess
import sys
import time

DOMAIN = "cluster.local"


def records(items):
    services = {}
    endpoints = {}
    for obj in items:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if obj["kind"] == "Service":
            services[key] = obj
        elif obj["kind"] == "Endpoints":
            endpoints[key] = obj
    lines = set()
    for (ns, name), svc in services.items():
        fqdn = f"{name}.{ns}.svc.{DOMAIN}"
        spec = svc.get("spec", {})
        ip = spec.get("clusterIP")
        if ip and ip != "None":
            lines.add(f"{ip} {fqdn}")
            continue
        publish_not_ready = spec.get("publishNotReadyAddresses", False)
        for subset in endpoints.get((ns, name), {}).get("subsets") or []:
            addrs = list(subset.get("addresses") or [])
            if publish_not_ready:
                addrs += subset.get("notReadyAddresses") or []
            for a in addrs:
                lines.add(f"{a['ip']} {fqdn}")
                if a.get("hostname"):
                    lines.add(f"{a['ip']} {a['hostname']}.{fqdn}")
    return "".join(line + "\n" for line in sorted(lines))


def main():
    kubectl, kubeconfig, hosts, pidfile = sys.argv[1:5]
    last = None
    while True:
        try:
            out = subprocess.run(
                [kubectl, "--kubeconfig", kubeconfig, "get", "services,endpoints",
                 "--all-namespaces", "-o", "json"],
                check=True, capture_output=True, timeout=10,
            ).stdout
            text = records(json.loads(out)["items"])
            if text != last:
                tmp = hosts + ".tmp"
                with open(tmp, "w") as f:
                    f.write(text)
                os.replace(tmp, hosts)
                with open(pidfile) as f:
                    os.kill(int(f.read().strip()), signal.SIGHUP)
                last = text
        except Exception as e:  # the API server may be restarting
            print(f"cluster-dns: {e}", file=sys.stderr, flush=True)
        time.sleep(1)


if __name__ == "__main__":
    main()
