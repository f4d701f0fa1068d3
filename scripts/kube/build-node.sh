#!/usr/bin/env bash
# Build the rest of a single Kubernetes node (kubelet, kube-controller-manager,
# kube-scheduler, kube-proxy) from the same Debian `kubernetes` 1.20 source
# tree that build-apiserver.sh prepared (it runs first). Idempotent: cached
# binaries that answer --version are kept. About 3 minutes with a warm Go cache.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${NSQ_KUBE_CACHE:-$HOME/.cache/nsq-kube}"
KROOT="$CACHE/src/gopath/src/k8s.io/kubernetes"
BINS=(kubelet kube-controller-manager kube-scheduler kube-proxy)
START_TS=$(date +%s)
log() { printf '[build-node %4ss] %s\n' "$(( $(date +%s) - START_TS ))" "$*" >&2; }

missing=()
for b in "${BINS[@]}"; do
  if ! [ -x "$CACHE/$b" ] || ! "$CACHE/$b" --version >/dev/null 2>&1; then
    missing+=("$b")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if ! [ -f "$KROOT/pkg/generated/openapi/zz_generated.openapi.go" ]; then
  # The source tree is prepared (and kept) by the apiserver build.
  [ -x "$CACHE/kube-apiserver" ] && rm -f "$CACHE/kube-apiserver"
  NSQ_KUBE_CLEAN=0 "$HERE/build-apiserver.sh"
fi

GO=/usr/lib/go-1.19/bin/go
[ -x "$GO" ] || GO=$(command -v go)
export GOPATH="$CACHE/src/gopath" GO111MODULE=off GOFLAGS="" GOCACHE="$CACHE/go-build-cache"
export PATH="$(dirname "$GO"):$PATH" CGO_ENABLED=0
unset GOROOT GOBIN || true
cd "$KROOT"

VPKG=k8s.io/kubernetes/vendor/k8s.io
LDFLAGS="-s -w"
for p in component-base/version client-go/pkg/version; do
  LDFLAGS+=" -X $VPKG/$p.gitVersion=v1.20.2 -X $VPKG/$p.gitMajor=1 -X $VPKG/$p.gitMinor=20"
  LDFLAGS+=" -X $VPKG/$p.gitTreeState=clean"
done
for b in "${missing[@]}"; do
  log "go build ./cmd/$b"
  "$GO" build -ldflags "$LDFLAGS" -o "$CACHE/$b.new" "./cmd/$b"
  mv "$CACHE/$b.new" "$CACHE/$b"
done
# The pause container: a static build of the tree's own pause.c.
if ! [ -x "$CACHE/pause" ]; then
  gcc -Os -static -o "$CACHE/pause" build/pause/linux/pause.c -DVERSION=3.4.1
fi
log "done: ${missing[*]}"
