#!/usr/bin/env python3
"""Write one container image as a docker-archive tarball (what `docker save`
writes and `ctr images import` / `docker load` read), without a container
engine. Used by scripts/image; standard library only.

The archive holds manifest.json, the image config (<sha256>.json) and one
uncompressed layer (<sha256>/layer.tar). The layer is built from the entries
named on the command line (files, directories, symlinks) plus the parent
directories they need; entries are sorted, owned by numeric ids with no user
names, and carry one fixed mtime, so the same inputs give the same digests.

  image-archive.py --out nsqd.tar --tag nsq-rs/nsqd:0.1.0 \\
      --file /usr/local/bin/nsqd build/nsqd 0755 0:0 --libs-of build/nsqd \\
      --dir /data 0755 65532:65532 --entrypoint '["/usr/local/bin/nsqd"]' ...

With --libs-of BIN, the shared libraries that `ldd BIN` lists (the dynamic
loader included) go into the layer at the paths ldd prints, as regular files
with the content of the file each path resolves to.

If --out already holds an archive with the same manifest (so the same config
digest, which covers the layer's diff_id) it is left untouched.
"""

import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time

LDD_LINE = re.compile(r"^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-fA-F]+\)\s*$")


def die(msg):
    print(f"image-archive: {msg}", file=sys.stderr)
    sys.exit(1)


def parse_owner(s):
    try:
        uid, gid = s.split(":")
        return int(uid), int(gid)
    except ValueError:
        die(f"owner must be UID:GID, got {s!r}")


def parse_mode(s):
    try:
        return int(s, 8)
    except ValueError:
        die(f"mode must be octal, got {s!r}")


def clean(path):
    """Image path -> tar member name: relative, normalised, no trailing /."""
    if not path.startswith("/"):
        die(f"image paths are absolute: {path!r}")
    name = os.path.normpath(path).lstrip("/")
    if not name or name.startswith(".."):
        die(f"bad image path {path!r}")
    return name


def ldd_libs(binary):
    """Absolute library paths that the dynamic loader maps for binary."""
    try:
        res = subprocess.run(["ldd", binary], capture_output=True, text=True)
    except FileNotFoundError:
        die("ldd not found")
    out = res.stdout + res.stderr
    if res.returncode != 0:
        if "not a dynamic executable" in out or "statically linked" in out:
            return []
        die(f"ldd {binary} failed: {out.strip()}")
    libs = []
    for line in res.stdout.splitlines():
        if "=> not found" in line:
            die(f"ldd {binary}: {line.strip()}")
        m = LDD_LINE.match(line)
        if m:
            libs.append(m.group(1))
        elif "linux-vdso" in line or "linux-gate" in line or not line.strip():
            continue
        elif "statically linked" in line:
            continue
        else:
            die(f"ldd {binary}: unexpected line {line.strip()!r}")
    return libs


class Layer:
    def __init__(self):
        self.entries = {}  # name -> dict

    def add(self, path, kind, mode, owner, src=None, target=None, explicit=True):
        name = clean(path)
        old = self.entries.get(name)
        if old is not None:
            if not explicit:
                return
            if old["explicit"] and old["kind"] != kind:
                die(f"{path} given twice with different kinds")
        self.entries[name] = dict(kind=kind, mode=mode, owner=owner, src=src,
                                  target=target, explicit=explicit)

    def add_parents(self):
        for name in list(self.entries):
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                parent = "/".join(parts[:i])
                e = self.entries.get(parent)
                if e is None:
                    self.entries[parent] = dict(kind="dir", mode=0o755, owner=(0, 0),
                                                src=None, target=None, explicit=False)
                elif e["kind"] != "dir":
                    die(f"/{parent} is a {e['kind']} but /{name} is inside it")

    def write(self, fileobj, mtime):
        with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(self.entries):
                e = self.entries[name]
                ti = tarfile.TarInfo(name)
                ti.mtime = mtime
                ti.mode = e["mode"]
                ti.uid, ti.gid = e["owner"]
                ti.uname = ti.gname = ""
                if e["kind"] == "dir":
                    ti.type = tarfile.DIRTYPE
                    tar.addfile(ti)
                elif e["kind"] == "symlink":
                    ti.type = tarfile.SYMTYPE
                    ti.linkname = e["target"]
                    tar.addfile(ti)
                else:
                    ti.type = tarfile.REGTYPE
                    ti.size = os.stat(e["src"]).st_size
                    with open(e["src"], "rb") as f:
                        tar.addfile(ti, f)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def existing_matches(path, manifest_bytes, layer_member, layer_size):
    """True if path is an archive with this manifest and layer size."""
    try:
        with tarfile.open(path, "r:") as tar:
            m = tar.extractfile("manifest.json")
            if m is None or m.read() != manifest_bytes:
                return False
            return tar.getmember(layer_member).size == layer_size
    except (OSError, KeyError, tarfile.TarError):
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="archive to write")
    ap.add_argument("--tag", action="append", required=True, help="repo:tag (repeatable)")
    ap.add_argument("--file", nargs=4, action="append", default=[],
                    metavar=("DEST", "SRC", "MODE", "UID:GID"))
    ap.add_argument("--dir", nargs=3, action="append", default=[],
                    metavar=("DEST", "MODE", "UID:GID"))
    ap.add_argument("--symlink", nargs=2, action="append", default=[],
                    metavar=("DEST", "TARGET"))
    ap.add_argument("--libs-of", action="append", default=[], metavar="BIN",
                    help="add the shared libraries ldd lists for BIN")
    ap.add_argument("--entrypoint", default="null", help="JSON list")
    ap.add_argument("--cmd", default="null", help="JSON list")
    ap.add_argument("--env", action="append", default=[], metavar="K=V")
    ap.add_argument("--workdir", default="/")
    ap.add_argument("--user", default="")
    ap.add_argument("--expose", action="append", default=[], metavar="PORT/PROTO")
    ap.add_argument("--label", action="append", default=[], metavar="K=V")
    ap.add_argument("--created", type=int, default=0,
                    help="Unix time for the config and every layer entry (default 0)")
    ap.add_argument("--comment", default="scripts/image")
    a = ap.parse_args()

    layer = Layer()
    for dest, src, mode, owner in a.file:
        if not os.path.isfile(src):
            die(f"{src}: not a file")
        layer.add(dest, "file", parse_mode(mode), parse_owner(owner), src=os.path.realpath(src))
    for dest, mode, owner in a.dir:
        layer.add(dest, "dir", parse_mode(mode), parse_owner(owner))
    for dest, target in a.symlink:
        layer.add(dest, "symlink", 0o777, (0, 0), target=target)
    for binary in a.libs_of:
        for lib in ldd_libs(binary):
            real = os.path.realpath(lib)
            if not os.path.isfile(real):
                die(f"{lib} (from ldd {binary}) is not a file")
            mode = os.stat(real).st_mode & 0o7777
            layer.add(lib, "file", mode, (0, 0), src=real, explicit=False)
    layer.add_parents()

    for ep in (a.entrypoint, a.cmd):
        v = json.loads(ep)
        if v is not None and not (isinstance(v, list) and all(isinstance(s, str) for s in v)):
            die(f"--entrypoint/--cmd take a JSON list of strings: {ep}")

    out = os.path.abspath(a.out)
    outdir = os.path.dirname(out)
    os.makedirs(outdir, exist_ok=True)

    fd, layer_tmp = tempfile.mkstemp(prefix=".layer-", suffix=".tar", dir=outdir)
    try:
        with os.fdopen(fd, "wb") as f:
            layer.write(f, a.created)
        layer_size = os.path.getsize(layer_tmp)
        diff_id = "sha256:" + sha256_file(layer_tmp)

        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(a.created))
        cfg = {
            "Env": a.env or None,
            "Entrypoint": json.loads(a.entrypoint),
            "Cmd": json.loads(a.cmd),
            "WorkingDir": a.workdir,
            "User": a.user,
        }
        if a.expose:
            cfg["ExposedPorts"] = {p: {} for p in a.expose}
        if a.label:
            cfg["Labels"] = dict(kv.split("=", 1) for kv in a.label)
        config = {
            "architecture": "amd64",
            "os": "linux",
            "created": created,
            "config": {k: v for k, v in cfg.items() if v is not None},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": a.comment}],
        }
        config_bytes = canonical(config)
        config_hex = hashlib.sha256(config_bytes).hexdigest()
        layer_member = f"{diff_id[7:]}/layer.tar"
        manifest = [{"Config": f"{config_hex}.json", "RepoTags": a.tag,
                     "Layers": [layer_member]}]
        manifest_bytes = canonical(manifest)

        if existing_matches(out, manifest_bytes, layer_member, layer_size):
            status = "unchanged"
        else:
            fd2, out_tmp = tempfile.mkstemp(prefix=".image-", suffix=".tar", dir=outdir)
            try:
                with os.fdopen(fd2, "wb") as f, \
                        tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    def member(name, size, mode=0o644):
                        ti = tarfile.TarInfo(name)
                        ti.mtime = a.created
                        ti.mode = mode
                        ti.uname = ti.gname = ""
                        ti.size = size
                        return ti
                    dir_ti = member(diff_id[7:], 0, 0o755)
                    dir_ti.type = tarfile.DIRTYPE
                    tar.addfile(dir_ti)
                    with open(layer_tmp, "rb") as lf:
                        tar.addfile(member(layer_member, layer_size), lf)
                    tar.addfile(member(f"{config_hex}.json", len(config_bytes)),
                                io.BytesIO(config_bytes))
                    tar.addfile(member("manifest.json", len(manifest_bytes)),
                                io.BytesIO(manifest_bytes))
                os.chmod(out_tmp, 0o644)
                os.replace(out_tmp, out)
            except BaseException:
                if os.path.exists(out_tmp):
                    os.unlink(out_tmp)
                raise
            status = "written"
    finally:
        os.unlink(layer_tmp)

    size = os.path.getsize(out)
    shown = os.path.relpath(out)
    if shown.startswith(".."):
        shown = out
    print(f"{status:9} {shown}  {', '.join(a.tag)}  "
          f"id sha256:{config_hex[:12]}  {size / 1e6:.1f} MB ({len(layer.entries)} entries)")


if __name__ == "__main__":
    main()
