"""The broker's preStop hook, exactly as the chart renders it, run against the
real nsqd and nsqlookupd binaries: afterwards nsqlookupd no longer lists the
broker, and the hook took its drain time. With nsqd.tls.required "true" the
hook only waits, and the broker leaves nsqlookupd at SIGTERM.

The hook calls busybox (shipped in the nsqd image). A busybox on PATH is used
if there is one; otherwise a stand-in runs each applet from the host, with a
few lines of Python as `nc`, so the HTTP request the hook writes by hand still
meets nsqd's real HTTP server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import nsqchart
from nsqchart import ROOT

NC = """\
import socket, sys, threading
host, port = [a for a in sys.argv[1:] if not a.startswith("-")][:2]
s = socket.create_connection((host, int(port)), timeout=5)
def pump():
    while data := sys.stdin.buffer.read1(4096):
        s.sendall(data)
threading.Thread(target=pump, daemon=True).start()
while data := s.recv(4096):
    sys.stdout.buffer.write(data)
"""


def binary(name: str) -> Path:
    for profile in ("debug", "release"):
        path = ROOT / "target" / profile / name
        if path.exists():
            return path
    pytest.skip(f"target/*/{name} is not built (cargo build -p broker -p lookupd)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def wait_until(what: str, check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def busybox(tmp: Path) -> str:
    real = shutil.which("busybox")
    if real:
        return real
    (tmp / "nc.py").write_text(NC)
    shim = tmp / "busybox"
    shim.write_text(
        "#!/bin/sh\n"
        "applet=$1; shift\n"
        f'[ "$applet" = nc ] && exec {sys.executable} {tmp / "nc.py"} "$@"\n'
        'exec "$applet" "$@"\n'
    )
    shim.chmod(0o755)
    return str(shim)


def test_prestop_hook_takes_the_broker_out_of_lookupd_then_waits(tmp_path):
    nsqd_bin, lookupd_bin = binary("nsqd"), binary("nsqlookupd")
    drain = 1
    sts = nsqchart.render({"nsqd": {"drainSeconds": drain}}).get("StatefulSet", "nsq-nsqd")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:3] == ["/usr/local/bin/busybox", "sh", "-c"]

    ports = {k: free_port() for k in ("tcp", "http", "lookupd_tcp", "lookupd_http")}
    bb = busybox(tmp_path)
    # The hook talks to 127.0.0.1:4151 inside the pod; here nsqd has a free port.
    script = command[3].replace("/usr/local/bin/busybox", bb).replace(
        "127.0.0.1 4151", f"127.0.0.1 {ports['http']}")
    assert script != command[3]

    procs = []
    try:
        procs.append(subprocess.Popen(
            [lookupd_bin, f"--tcp-address=127.0.0.1:{ports['lookupd_tcp']}",
             f"--http-address=127.0.0.1:{ports['lookupd_http']}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(
            [nsqd_bin, f"--tcp-address=127.0.0.1:{ports['tcp']}",
             f"--http-address=127.0.0.1:{ports['http']}", f"--data-path={tmp_path}",
             f"--lookupd-tcp-address=127.0.0.1:{ports['lookupd_tcp']}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        nodes = f"http://127.0.0.1:{ports['lookupd_http']}/nodes"

        def registered() -> bool:
            try:
                return len(get_json(nodes)["producers"]) == 1
            except OSError:
                return False

        wait_until("nsqd to register with nsqlookupd", registered)

        started = time.monotonic()
        hook = subprocess.run([bb, "sh", "-c", script], env={"PATH": os.environ["PATH"]},
                              timeout=30, capture_output=True)
        took = time.monotonic() - started
        assert hook.returncode == 0, hook.stderr.decode()
        assert get_json(nodes)["producers"] == [], "the broker is still registered"
        assert took >= drain
        # nsqd itself is still up: SIGTERM (and the flush) come after the hook.
        assert procs[1].poll() is None
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/ping", timeout=5) as r:
            assert r.read() == b"OK"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate and key for the broker, as its TLS Secret holds them."""
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("openssl is not installed: no certificate for the broker")
    crt, key = tmp / "tls.crt", tmp / "tls.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(crt), "-subj", "/CN=nsq-nsqd"],
        check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return crt, key


def test_with_tls_required_the_hook_waits_and_sigterm_leaves_lookupd(tmp_path):
    nsqd_bin, lookupd_bin = binary("nsqd"), binary("nsqlookupd")
    drain = 1
    sts = nsqchart.render({
        "nsqd": {"drainSeconds": drain, "tls": {"secretName": "nsq-broker-tls", "required": "true"}},
        "operator": {"enabled": False},
    }).get("StatefulSet", "nsq-nsqd")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:3] == ["/usr/local/bin/busybox", "sh", "-c"]
    crt, key = self_signed(tmp_path)
    ports = {k: free_port() for k in ("tcp", "http", "https", "lookupd_tcp", "lookupd_http")}
    bb = busybox(tmp_path)
    script = command[3].replace("/usr/local/bin/busybox", bb)

    procs = []
    try:
        procs.append(subprocess.Popen(
            [lookupd_bin, f"--tcp-address=127.0.0.1:{ports['lookupd_tcp']}",
             f"--http-address=127.0.0.1:{ports['lookupd_http']}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        nsqd = subprocess.Popen(
            [nsqd_bin, f"--tcp-address=127.0.0.1:{ports['tcp']}",
             f"--http-address=127.0.0.1:{ports['http']}",
             f"--https-address=127.0.0.1:{ports['https']}", f"--data-path={tmp_path}",
             f"--lookupd-tcp-address=127.0.0.1:{ports['lookupd_tcp']}",
             f"--tls-cert={crt}", f"--tls-key={key}", "--tls-required=true"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(nsqd)
        nodes = f"http://127.0.0.1:{ports['lookupd_http']}/nodes"

        def producers() -> int:
            try:
                return len(get_json(nodes)["producers"])
            except OSError:
                return -1

        wait_until("nsqd to register with nsqlookupd", lambda: producers() == 1)
        # Plain HTTP is refused, which is why the hook cannot leave lookupd.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/ping", timeout=5)
        assert refused.value.code == 403

        started = time.monotonic()
        hook = subprocess.run([bb, "sh", "-c", script], env={"PATH": os.environ["PATH"]},
                              timeout=30, capture_output=True)
        assert hook.returncode == 0, hook.stderr.decode()
        assert time.monotonic() - started >= drain
        assert producers() == 1, "the waiting hook does not touch nsqlookupd"

        # The kubelet's SIGTERM: nsqd flushes, exits, and its lookupd
        # connection closes, which takes it out of nsqlookupd.
        nsqd.send_signal(signal.SIGTERM)
        assert nsqd.wait(timeout=30) == 0
        wait_until("nsqlookupd to drop the stopped broker", lambda: producers() == 0)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait(timeout=30)
