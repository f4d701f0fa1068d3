#!/usr/bin/env bash
# Build a real kube-apiserver (v1.20.2) from Debian bookworm's `kubernetes`
# source package, and make sure etcd (and, if possible, kubectl) are present.
#
# Result (default cache dir ~/.cache/nsq-kube, override with NSQ_KUBE_CACHE):
#   $CACHE/kube-apiserver   the apiserver binary
#   $CACHE/kubectl          kubectl 1.20.2 from Debian's kubernetes-client .deb
#                           (extracted, not installed; optional)
#   $CACHE/paths.env        KUBE_APISERVER_BIN=, ETCD_BIN=, KUBECTL_BIN=
#
# Idempotent: if $CACHE/kube-apiserver exists and `--version` works (and etcd
# is installed) it exits 0 immediately; with a cached binary but no etcd it
# only installs etcd-server.  Needs root (or passwordless sudo) for apt-get.
# Works non-interactively (CI=true, no stdin).
#
# A full build takes ~6-8 minutes on 2 cores (make generated_files ~1.5 min,
# go build ~5 min).  Intermediate state ($CACHE/src: Debian source in a GOPATH
# layout, $CACHE/go-build-cache) is kept so a rebuild takes seconds; set
# NSQ_KUBE_CLEAN=1 to delete it (~1.5 GB) after a successful build, e.g. before
# saving $CACHE as a CI cache (then only kube-apiserver, kubectl and
# paths.env, ~140 MB, remain).
set -euo pipefail

KUBE_DEB_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
KUBE_GIT_VERSION="v1.20.2"
CACHE="${NSQ_KUBE_CACHE:-$HOME/.cache/nsq-kube}"
SRC_ROOT="$CACHE/src"
GOPATH_DIR="$SRC_ROOT/gopath"
KROOT="$GOPATH_DIR/src/k8s.io/kubernetes"
APISERVER_BIN="$CACHE/kube-apiserver"
SRC_LIST_BASE=/etc/apt/sources.list.d/nsq-kube-bookworm-src

export DEBIAN_FRONTEND=noninteractive
START_TS=$(date +%s)

log() { printf '[build-apiserver %4ss] %s\n' "$(( $(date +%s) - START_TS ))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo -n)
else
  SUDO=()
fi
as_root() { "${SUDO[@]}" "$@"; }
is_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}
# Install only what is missing: never upgrade packages the machine already has.
apt_install() {
  local missing=() p
  for p in "$@"; do is_installed "$p" || missing+=("$p"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if ! as_root apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 \
      "${missing[@]}" </dev/null; then
    [ "$APT_UPDATED" = 1 ] && return 1
    log "apt-get install failed; retrying after apt-get update"
    as_root apt-get update -q </dev/null
    APT_UPDATED=1
    as_root apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 \
      "${missing[@]}" </dev/null
  fi
}
APT_UPDATED=0

find_etcd() {
  local p
  for p in "$(command -v etcd 2>/dev/null || true)" /usr/bin/etcd /usr/local/bin/etcd; do
    if [ -n "$p" ] && [ -x "$p" ]; then echo "$p"; return 0; fi
  done
  return 1
}

ensure_etcd() {
  if ! find_etcd >/dev/null; then
    log "installing etcd-server (Debian)"
    apt_install etcd-server >&2
    # The package ships a systemd unit; we never want a system etcd running.
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      as_root systemctl disable --now etcd >/dev/null 2>&1 || true
    fi
  fi
  ETCD_BIN=$(find_etcd) || die "etcd not found after installing etcd-server"
  log "etcd: $ETCD_BIN ($("$ETCD_BIN" --version 2>/dev/null | head -n1))"
}

# kubectl from Debian's kubernetes-client.  We download the .deb and extract it
# into the cache instead of installing it, because /usr/bin/kubectl is often
# already owned by another package (e.g. Google's `kubectl`), which would make
# dpkg fail with a file conflict.  Failure here is not fatal.
ensure_kubectl() {
  KUBECTL_BIN=""
  if [ -x "$CACHE/kubectl" ] && "$CACHE/kubectl" version --client >/dev/null 2>&1; then
    KUBECTL_BIN="$CACHE/kubectl"
    return 0
  fi
  local tmp
  tmp=$(mktemp -d)
  if (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "kubernetes-client=$KUBE_DEB_VERSION" </dev/null >&2 \
        && dpkg-deb -x kubernetes-client_*.deb root) \
      && [ -x "$tmp/root/usr/bin/kubectl" ]; then
    install -m 0755 "$tmp/root/usr/bin/kubectl" "$CACHE/kubectl"
    KUBECTL_BIN="$CACHE/kubectl"
    log "kubectl: $KUBECTL_BIN ($("$KUBECTL_BIN" version --client --short 2>/dev/null || true))"
  else
    log "WARNING: could not fetch kubectl from kubernetes-client; tests must use the API directly"
  fi
  rm -rf "$tmp"
}

write_paths() {
  cat >"$CACHE/paths.env" <<EOF
KUBE_APISERVER_BIN=$APISERVER_BIN
ETCD_BIN=$ETCD_BIN
KUBECTL_BIN=$KUBECTL_BIN
EOF
  log "wrote $CACHE/paths.env"
}

mkdir -p "$CACHE"

# ---------------------------------------------------------------- fast path
if [ -x "$APISERVER_BIN" ] && "$APISERVER_BIN" --version >/dev/null 2>&1; then
  if ETCD_BIN=$(find_etcd); then
    if [ ! -f "$CACHE/paths.env" ]; then
      KUBECTL_BIN=""; [ -x "$CACHE/kubectl" ] && KUBECTL_BIN="$CACHE/kubectl"
      write_paths
    fi
    exit 0
  fi
  # Cached binary (e.g. restored CI cache) but a fresh machine: only etcd is missing.
  log "cached $("$APISERVER_BIN" --version) found; etcd missing"
  ensure_etcd
  KUBECTL_BIN=""; [ -x "$CACHE/kubectl" ] && KUBECTL_BIN="$CACHE/kubectl"
  write_paths
  exit 0
fi

log "building kube-apiserver $KUBE_GIT_VERSION from Debian source $KUBE_DEB_VERSION into $CACHE"

# ------------------------------------------------------- deb-src for bookworm
have_src() {
  apt-cache showsrc kubernetes 2>/dev/null | grep -qx "Version: $KUBE_DEB_VERSION"
}

add_deb_src() {
  local tmp_sources tmp_list
  tmp_sources=$(mktemp); tmp_list=$(mktemp)
  # deb822 files: copy every enabled stanza of Types: deb for a bookworm* suite,
  # switching it to deb-src.
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    case "$f" in "$SRC_LIST_BASE"*) continue ;; esac
    awk 'BEGIN { RS=""; ORS="\n\n" }
         {
           if ($0 !~ /(^|\n)Suites:[^\n]*bookworm/) next
           if ($0 ~ /(^|\n)Enabled:[ \t]*no/) next
           if ($0 !~ /(^|\n)Types:[^\n]*(^|[ \t])deb([ \t]|\n|$)/) next
           n = split($0, lines, "\n"); out = ""
           for (i = 1; i <= n; i++) {
             if (lines[i] ~ /^Types:/) lines[i] = "Types: deb-src"
             out = out lines[i] "\n"
           }
           printf "%s\n", out
         }' "$f" >>"$tmp_sources"
  done
  # one-line format files
  local lists=()
  [ -f /etc/apt/sources.list ] && lists+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    case "$f" in "$SRC_LIST_BASE"*) continue ;; esac
    lists+=("$f")
  done
  if [ "${#lists[@]}" -gt 0 ]; then
    grep -hE '^[[:space:]]*deb[[:space:]].*[[:space:]]bookworm' "${lists[@]}" 2>/dev/null \
      | sed -E 's/^[[:space:]]*deb[[:space:]]/deb-src /' >>"$tmp_list" || true
  fi
  if [ ! -s "$tmp_sources" ] && [ ! -s "$tmp_list" ]; then
    log "no bookworm deb entries found; falling back to deb.debian.org"
    cat >"$tmp_sources" <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

EOF
  fi
  if [ -s "$tmp_sources" ]; then
    as_root install -m 0644 "$tmp_sources" "$SRC_LIST_BASE.sources"
    log "wrote $SRC_LIST_BASE.sources:"; sed 's/^/    /' "$SRC_LIST_BASE.sources" >&2
  fi
  if [ -s "$tmp_list" ]; then
    as_root install -m 0644 "$tmp_list" "$SRC_LIST_BASE.list"
    log "wrote $SRC_LIST_BASE.list:"; sed 's/^/    /' "$SRC_LIST_BASE.list" >&2
  fi
  rm -f "$tmp_sources" "$tmp_list"
}

if have_src; then
  log "deb-src for kubernetes $KUBE_DEB_VERSION already configured"
else
  add_deb_src
  log "apt-get update"
  as_root apt-get update -q </dev/null >&2
  APT_UPDATED=1
  have_src || die "apt has no source package kubernetes=$KUBE_DEB_VERSION even after adding deb-src"
fi

# ------------------------------------------------------------- build deps
PKGS=(golang-go rsync make gcc libc6-dev dpkg-dev xz-utils ca-certificates
      golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev)
log "installing build dependencies: ${PKGS[*]}"
apt_install "${PKGS[@]}" >&2 || die "apt-get install failed"
ensure_etcd
GO=/usr/lib/go-1.19/bin/go
[ -x "$GO" ] || GO=$(command -v go)
log "go: $GO ($("$GO" version))"

# ------------------------------------------------------------- source
if [ ! -f "$KROOT/.nsq-kube-extracted" ]; then
  log "apt-get source kubernetes=$KUBE_DEB_VERSION"
  rm -rf "$SRC_ROOT"
  mkdir -p "$SRC_ROOT/dl" "$(dirname "$KROOT")"
  # _apt cannot write into root's home; download as root without sandbox.
  (cd "$SRC_ROOT/dl" && apt-get source -q -o APT::Sandbox::User=root \
      "kubernetes=$KUBE_DEB_VERSION" </dev/null >&2)
  srcdir=$(find "$SRC_ROOT/dl" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
  [ -n "$srcdir" ] && [ -f "$srcdir/cmd/kube-apiserver/apiserver.go" ] \
    || die "unexpected source layout in $SRC_ROOT/dl"
  mv "$srcdir" "$KROOT"
  rm -rf "$SRC_ROOT/dl"
  touch "$KROOT/.nsq-kube-extracted"
else
  log "reusing extracted source in $KROOT"
fi

# GOPATH-mode environment. The Kubernetes 1.20 build is GOPATH based: the tree
# must live at $GOPATH/src/k8s.io/kubernetes, with vendor/ (whose k8s.io/*
# entries are symlinks into staging/).
export GOPATH="$GOPATH_DIR"
export GO111MODULE=off
export GOFLAGS=""
export GOCACHE="$CACHE/go-build-cache"
export PATH="$(dirname "$GO"):$PATH"
export CGO_ENABLED=0
unset GOROOT GOBIN || true

cd "$KROOT"

# ---------------------------------------------------- swap reflect2/jsoniter
# The vendored reflect2 1.0.1 segfaults with Go >= 1.18 (first custom resource
# write); use Debian's reflect2 1.0.2 and json-iterator 1.1.12.
for pkg in github.com/modern-go/reflect2 github.com/json-iterator/go; do
  src="/usr/share/gocode/src/$pkg"
  [ -d "$src" ] || die "missing $src"
  log "vendoring Debian's $pkg"
  rm -rf "vendor/$pkg"
  mkdir -p "vendor/$pkg"
  # -L: Debian's gocode trees may contain symlinks; vendor needs real files.
  rsync -rL --delete --exclude '.git' --exclude '*_test.go' --exclude 'test/' \
    --exclude 'benchmarks/' --exclude 'skip_tests/' --exclude 'type_tests/' \
    --exclude 'api_tests/' --exclude 'extension_tests/' --exclude 'misc_tests/' \
    --exclude 'any_tests/' --exclude 'value_tests/' \
    "$src/" "vendor/$pkg/"
done

# ------------------------------------------------------- generated files
if [ ! -s pkg/generated/openapi/zz_generated.openapi.go ]; then
  log "make generated_files (builds code generators; a few minutes)"
  make generated_files >&2
  [ -s pkg/generated/openapi/zz_generated.openapi.go ] \
    || die "make generated_files did not produce pkg/generated/openapi/zz_generated.openapi.go"
else
  log "generated files already present"
fi

# ------------------------------------------------------------------- build
VPKG=k8s.io/kubernetes/vendor/k8s.io
BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS="-s -w"
for p in component-base/version client-go/pkg/version; do
  LDFLAGS+=" -X $VPKG/$p.gitVersion=$KUBE_GIT_VERSION"
  LDFLAGS+=" -X $VPKG/$p.gitMajor=1 -X $VPKG/$p.gitMinor=20"
  LDFLAGS+=" -X $VPKG/$p.gitTreeState=clean -X $VPKG/$p.buildDate=$BUILD_DATE"
done
log "go build ./cmd/kube-apiserver (about 5 minutes on 2 cores)"
BUILD_START=$(date +%s)
"$GO" build -ldflags "$LDFLAGS" -o "$CACHE/kube-apiserver.new" ./cmd/kube-apiserver
mv "$CACHE/kube-apiserver.new" "$APISERVER_BIN"
log "go build took $(( $(date +%s) - BUILD_START ))s"
"$APISERVER_BIN" --version >&2 || die "built binary does not run"

ensure_kubectl
write_paths
if [ "${NSQ_KUBE_CLEAN:-0}" = 1 ]; then
  log "NSQ_KUBE_CLEAN=1: removing $SRC_ROOT and $GOCACHE"
  chmod -R u+w "$SRC_ROOT" "$GOCACHE" 2>/dev/null || true
  rm -rf "$SRC_ROOT" "$GOCACHE"
fi
log "done in $(( $(date +%s) - START_TS ))s: $APISERVER_BIN"
