#!/usr/bin/env bash
# Start a throw-away etcd + kube-apiserver on loopback for tests.
#
# usage: start-apiserver.sh DIR
#
# Creates in DIR:
#   ca.crt ca.key server.crt server.key   self-signed CA + serving cert (127.0.0.1, localhost)
#   sa.key sa.pub                         service-account signing keys
#   tokens.csv                            static token file (admin token, group system:masters)
#   etcd/                                 etcd data dir (reused if it already exists)
#   etcd.log apiserver.log                process logs
#   kubeconfig                            admin kubeconfig (CA embedded, bearer token)
#   env                                   KEY=value lines, sourceable by sh/bash (see below)
#
# Both processes are left running in the background (own session, all output to
# the log files); stop them with stop-apiserver.sh DIR.
#
# Binaries: $KUBE_APISERVER_BIN / $ETCD_BIN if set, else from
# ${NSQ_KUBE_CACHE:-~/.cache/nsq-kube}/paths.env (written by build-apiserver.sh).
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
START_TS=$(date +%s%N)
log() { printf '[start-apiserver] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$1"
DIR=$(cd "$1" && pwd -P)
case "$DIR" in *[[:space:]]*) die "DIR must not contain whitespace: $DIR" ;; esac

CACHE="${NSQ_KUBE_CACHE:-$HOME/.cache/nsq-kube}"
if [ -f "$CACHE/paths.env" ]; then
  # shellcheck disable=SC1091
  _api=${KUBE_APISERVER_BIN:-}; _etcd=${ETCD_BIN:-}; _kubectl=${KUBECTL_BIN:-}
  . "$CACHE/paths.env"
  KUBE_APISERVER_BIN=${_api:-$KUBE_APISERVER_BIN}
  ETCD_BIN=${_etcd:-$ETCD_BIN}
  KUBECTL_BIN=${_kubectl:-${KUBECTL_BIN:-}}
fi
KUBE_APISERVER_BIN=${KUBE_APISERVER_BIN:-$CACHE/kube-apiserver}
ETCD_BIN=${ETCD_BIN:-$(command -v etcd || echo /usr/bin/etcd)}
KUBECTL_BIN=${KUBECTL_BIN:-}
[ -x "$KUBE_APISERVER_BIN" ] || die "kube-apiserver not found at $KUBE_APISERVER_BIN (run scripts/kube/build-apiserver.sh)"
[ -x "$ETCD_BIN" ] || die "etcd not found at $ETCD_BIN (apt-get install etcd-server, or run build-apiserver.sh)"
command -v openssl >/dev/null || die "openssl is required"
command -v curl >/dev/null || die "curl is required"

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

if [ -f "$DIR/env" ]; then
  old_api=$(sed -n 's/^APISERVER_PID=//p' "$DIR/env"); old_etcd=$(sed -n 's/^ETCD_PID=//p' "$DIR/env")
  if pid_alive "$old_api" || pid_alive "$old_etcd"; then
    die "an instance from $DIR/env is still running (pids $old_api $old_etcd); run stop-apiserver.sh $DIR first"
  fi
  rm -f "$DIR/env"
fi

# ------------------------------------------------------------ free ports
USED_PORTS=" "
port_in_use() {
  local hex
  hex=$(printf ':%04X' "$1")
  awk -v h="$hex" 'FNR > 1 && substr($2, length($2) - 4) == h { f = 1 } END { exit !f }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
free_port() {
  local p i
  for i in $(seq 1 200); do
    # below the Linux ephemeral range (32768+) to avoid clashing with client sockets
    p=$(( 20000 + (RANDOM % 12000) ))
    case "$USED_PORTS" in *" $p "*) continue ;; esac
    if ! port_in_use "$p"; then USED_PORTS+="$p "; echo "$p"; return 0; fi
  done
  die "no free port found"
}
ETCD_CLIENT_PORT=$(free_port)
ETCD_PEER_PORT=$(free_port)
API_PORT=$(free_port)

# ---------------------------------------------------------------- certs
if [ ! -s "$DIR/server.crt" ] || [ ! -s "$DIR/ca.crt" ] || [ ! -s "$DIR/sa.key" ]; then
  log "generating CA, serving certificate and service-account keys in $DIR"
  (
    cd "$DIR"
    umask 077
    openssl req -x509 -new -nodes -newkey rsa:2048 -sha256 -days 3650 \
      -keyout ca.key -out ca.crt -subj "/CN=nsq-kube-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -addext "subjectKeyIdentifier=hash" 2>/dev/null
    openssl req -new -nodes -newkey rsa:2048 -sha256 \
      -keyout server.key -out server.csr -subj "/CN=kube-apiserver" 2>/dev/null
    cat >server.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
authorityKeyIdentifier=keyid
subjectKeyIdentifier=hash
EOF
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -sha256 -days 3650 -extfile server.ext -out server.crt 2>/dev/null
    rm -f server.csr server.ext ca.srl
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 644 ca.crt server.crt sa.pub
  )
fi
if [ ! -s "$DIR/tokens.csv" ]; then
  ( umask 077; echo "$(openssl rand -hex 32),admin,admin-uid,\"system:masters\"" >"$DIR/tokens.csv" )
fi
TOKEN=$(cut -d, -f1 "$DIR/tokens.csv" | head -n1)

# ----------------------------------------------------------------- etcd
mkdir -p "$DIR/etcd"
chmod 700 "$DIR/etcd"
case "$(uname -m)" in x86_64|ppc64le|s390x) ;; *) export ETCD_UNSUPPORTED_ARCH="$(dpkg --print-architecture 2>/dev/null || uname -m)" ;; esac
ETCD_URL="http://127.0.0.1:$ETCD_CLIENT_PORT"
PEER_URL="http://127.0.0.1:$ETCD_PEER_PORT"
# setsid: own session so the processes outlive the calling shell / CI step
# group; all stdio to files so callers capturing our output don't hang.
setsid "$ETCD_BIN" \
  --name=nsq-kube \
  --data-dir="$DIR/etcd" \
  --listen-client-urls="$ETCD_URL" \
  --advertise-client-urls="$ETCD_URL" \
  --listen-peer-urls="$PEER_URL" \
  --initial-advertise-peer-urls="$PEER_URL" \
  --initial-cluster="nsq-kube=$PEER_URL" \
  --initial-cluster-state=new \
  --listen-metrics-urls="" \
  --logger=zap --log-level=warn \
  >"$DIR/etcd.log" 2>&1 </dev/null &
ETCD_PID=$!

cleanup_on_error() {
  local rc=$?
  if [ $rc -ne 0 ]; then
    log "startup failed (rc=$rc); stopping processes"
    pid_alive "${API_PID:-}" && kill "$API_PID" 2>/dev/null || true
    pid_alive "${ETCD_PID:-}" && kill "$ETCD_PID" 2>/dev/null || true
    for f in etcd.log apiserver.log; do
      [ -f "$DIR/$f" ] && { log "---- last lines of $DIR/$f"; tail -n 30 "$DIR/$f" >&2; }
    done
  fi
}
trap cleanup_on_error EXIT

for i in $(seq 1 100); do
  pid_alive "$ETCD_PID" || die "etcd exited"
  if curl -fsS --max-time 1 "$ETCD_URL/health" 2>/dev/null | grep -q '"health":"true"'; then break; fi
  [ "$i" -eq 100 ] && die "etcd not healthy after 20s"
  sleep 0.2
done
log "etcd up (pid $ETCD_PID, $ETCD_URL)"

# -------------------------------------------------------- kube-apiserver
API_URL="https://127.0.0.1:$API_PORT"
setsid "$KUBE_APISERVER_BIN" \
  --etcd-servers="$ETCD_URL" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --secure-port="$API_PORT" \
  --insecure-port=0 \
  --tls-cert-file="$DIR/server.crt" \
  --tls-private-key-file="$DIR/server.key" \
  --cert-dir="$DIR/certs" \
  --token-auth-file="$DIR/tokens.csv" \
  --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$DIR/sa.pub" \
  --service-account-signing-key-file="$DIR/sa.key" \
  --api-audiences=https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range=10.96.0.0/16 \
  --endpoint-reconciler-type=none \
  --disable-admission-plugins=ServiceAccount \
  --allow-privileged=true \
  --profiling=false \
  --logtostderr=true --v=1 \
  >"$DIR/apiserver.log" 2>&1 </dev/null &
API_PID=$!

for i in $(seq 1 300); do
  pid_alive "$API_PID" || die "kube-apiserver exited"
  pid_alive "$ETCD_PID" || die "etcd exited"
  if [ "$(curl -sS --max-time 2 --cacert "$DIR/ca.crt" -H "Authorization: Bearer $TOKEN" \
          "$API_URL/readyz" 2>/dev/null)" = "ok" ]; then
    break
  fi
  [ "$i" -eq 300 ] && die "kube-apiserver not ready after 60s"
  sleep 0.2
done

# ------------------------------------------------------- kubeconfig + env
CA_B64=$(base64 -w0 <"$DIR/ca.crt")
( umask 077
cat >"$DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: nsq-kube-test
  cluster:
    server: $API_URL
    certificate-authority-data: $CA_B64
users:
- name: admin
  user:
    token: $TOKEN
contexts:
- name: nsq-kube-test
  context:
    cluster: nsq-kube-test
    user: admin
    namespace: default
current-context: nsq-kube-test
EOF
cat >"$DIR/env.tmp" <<EOF
KUBECONFIG=$DIR/kubeconfig
APISERVER_URL=$API_URL
APISERVER_TOKEN=$TOKEN
APISERVER_CA=$DIR/ca.crt
APISERVER_PID=$API_PID
ETCD_URL=$ETCD_URL
ETCD_PID=$ETCD_PID
KUBE_TEST_DIR=$DIR
KUBECTL_BIN=$KUBECTL_BIN
EOF
mv "$DIR/env.tmp" "$DIR/env"
)
trap - EXIT
ELAPSED_MS=$(( ($(date +%s%N) - START_TS) / 1000000 ))
log "kube-apiserver ready at $API_URL (pid $API_PID) in ${ELAPSED_MS}ms; env: $DIR/env"
