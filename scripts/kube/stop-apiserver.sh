#!/usr/bin/env bash
# Stop the kube-apiserver + etcd started by start-apiserver.sh DIR.
# usage: stop-apiserver.sh DIR [--purge]   (--purge also deletes DIR)
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 DIR [--purge]" >&2; exit 2; }
DIR=$1
PURGE=${2:-}
log() { printf '[stop-apiserver] %s\n' "$*" >&2; }

if [ ! -f "$DIR/env" ]; then
  log "no $DIR/env; nothing to stop"
else
  APISERVER_PID=$(sed -n 's/^APISERVER_PID=//p' "$DIR/env")
  ETCD_PID=$(sed -n 's/^ETCD_PID=//p' "$DIR/env")
  REAL_DIR=$(sed -n 's/^KUBE_TEST_DIR=//p' "$DIR/env")

  # Only signal a pid that still belongs to our process (pid reuse guard):
  # its command line must mention this DIR.
  ours() {
    [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF "$REAL_DIR/"
  }
  stop_pid() {
    local name=$1 pid=$2 i
    if ! ours "$pid"; then log "$name (pid ${pid:-?}) not running"; return 0; fi
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
      ours "$pid" || { log "$name (pid $pid) stopped"; return 0; }
      sleep 0.1
    done
    log "$name (pid $pid) did not exit after 10s; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
  }
  stop_pid kube-apiserver "$APISERVER_PID"
  stop_pid etcd "$ETCD_PID"
  rm -f "$DIR/env"
fi

if [ "$PURGE" = "--purge" ]; then
  rm -rf "$DIR"
  log "removed $DIR"
fi
