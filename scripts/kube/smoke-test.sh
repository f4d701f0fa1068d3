#!/usr/bin/env bash
# End-to-end check of the test kube-apiserver: build (cached), start, exercise
# namespaces, a CRD with pattern validation + status subresource, server-side
# apply on /status, 422 on schema violation, coordination.k8s.io Leases,
# RBAC for anonymous requests, then stop.
#
# usage: smoke-test.sh [DIR]   (default: a fresh mktemp dir, removed on success)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

log() { printf '[smoke] %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

"$HERE/build-apiserver.sh"

if [ $# -ge 1 ]; then DIR=$1; KEEP=1; else DIR=$(mktemp -d /tmp/nsq-kube-smoke.XXXXXX); KEEP=0; fi
finish() {
  local rc=$?
  "$HERE/stop-apiserver.sh" "$DIR" || true
  if [ $rc -eq 0 ] && [ "$KEEP" = 0 ]; then rm -rf "$DIR"; fi
  if [ $rc -ne 0 ]; then
    log "smoke test FAILED (rc=$rc); logs in $DIR"
    [ -f "$DIR/apiserver.log" ] && tail -n 20 "$DIR/apiserver.log" >&2
  fi
}
trap finish EXIT

T0=$(date +%s%N)
"$HERE/start-apiserver.sh" "$DIR"
log "start-apiserver.sh took $(( ($(date +%s%N) - T0) / 1000000 ))ms"
# shellcheck disable=SC1091
. "$DIR/env"

BODY_FILE="$DIR/smoke-body.json"
# req METHOD PATH [CONTENT_TYPE BODY] -> $CODE, $BODY
req() {
  local method=$1 path=$2 ct=${3:-} data=${4:-}
  local args=(-sS -o "$BODY_FILE" -w '%{http_code}' --cacert "$APISERVER_CA"
              -H "Authorization: Bearer $APISERVER_TOKEN" -H 'Accept: application/json' -A nsq-kube-smoke
              -X "$method")
  if [ -n "$ct" ]; then args+=(-H "Content-Type: $ct" --data-binary "$data"); fi
  CODE=$(curl "${args[@]}" "$APISERVER_URL$path")
  BODY=$(cat "$BODY_FILE")
}
expect() { # expect CODE what
  [ "$CODE" = "$1" ] || fail "$2: expected HTTP $1, got $CODE: $BODY"
  log "ok: $2 (HTTP $CODE)"
}
contains() { # contains STRING what
  case "$BODY" in *"$1"*) ;; *) fail "$2: response does not contain $1: $BODY" ;; esac
}

req GET /version
expect 200 "GET /version"
log "server version: $(printf '%s' "$BODY" | tr -d '\n ' | sed -n 's/.*"gitVersion":"\([^"]*\)".*/\1/p')"

# RBAC: anonymous may not list namespaces
CODE=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$APISERVER_CA" "$APISERVER_URL/api/v1/namespaces")
[ "$CODE" = 403 ] || fail "anonymous list namespaces: expected 403, got $CODE"
log "ok: anonymous list namespaces forbidden (HTTP 403)"

# --- namespace
req POST /api/v1/namespaces application/json \
  '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"smoke"}}'
expect 201 "create namespace smoke"

# --- CRD with pattern + status subresource
CRD='{
 "apiVersion": "apiextensions.k8s.io/v1",
 "kind": "CustomResourceDefinition",
 "metadata": {"name": "widgets.smoke.nsq.io"},
 "spec": {
  "group": "smoke.nsq.io",
  "scope": "Namespaced",
  "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
  "versions": [{
   "name": "v1alpha1", "served": true, "storage": true,
   "subresources": {"status": {}},
   "schema": {"openAPIV3Schema": {
    "type": "object",
    "properties": {
     "spec": {"type": "object", "required": ["name"], "properties": {
       "name": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,62}$"},
       "replicas": {"type": "integer", "minimum": 1, "default": 1}}},
     "status": {"type": "object", "properties": {
       "phase": {"type": "string"},
       "readyReplicas": {"type": "integer"}}}
    }}}
  }]
 }
}'
req POST /apis/apiextensions.k8s.io/v1/customresourcedefinitions application/json "$CRD"
expect 201 "create CRD widgets.smoke.nsq.io"

for i in $(seq 1 100); do
  req GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.smoke.nsq.io
  if printf '%s' "$BODY" | tr -d '\n ' | grep -q '"type":"Established","status":"True"'; then break; fi
  [ "$i" -eq 100 ] && fail "CRD not Established after 20s: $BODY"
  sleep 0.2
done
log "ok: CRD Established"

W=/apis/smoke.nsq.io/v1alpha1/namespaces/smoke/widgets
# The handler for a fresh CRD can lag "Established" by a moment: retry on 404.
for i in $(seq 1 50); do
  req POST "$W" application/json \
    '{"apiVersion":"smoke.nsq.io/v1alpha1","kind":"Widget","metadata":{"name":"w1"},"spec":{"name":"good-name"}}'
  [ "$CODE" = 404 ] || break
  sleep 0.2
done
expect 201 "create custom object w1"
contains '"replicas":1' "structural-schema default applied"

# --- server-side apply on the /status subresource
req PATCH "$W/w1/status?fieldManager=test" application/apply-patch+yaml \
'apiVersion: smoke.nsq.io/v1alpha1
kind: Widget
metadata:
  name: w1
status:
  phase: Ready
  readyReplicas: 3
'
expect 200 "server-side apply to w1/status (fieldManager=test)"
contains '"phase":"Ready"' "status after apply"
contains '"manager":"test"' "managedFields entry for fieldManager=test"
contains '"operation":"Apply"' "managedFields Apply operation"

req GET "$W/w1"
expect 200 "get w1"
contains '"readyReplicas":3' "status persisted"
contains '"name":"good-name"' "spec untouched by status apply"

# The status subresource must ignore spec changes. Kubernetes 1.20 quirk: SSA
# on /status still runs conflict detection on spec fields (per-subresource
# field reset only arrived in 1.22), so without force this is a 409 conflict
# with the creator ("curl"); with force the spec value is still ignored.
req PATCH "$W/w1/status?fieldManager=test" application/apply-patch+yaml \
'apiVersion: smoke.nsq.io/v1alpha1
kind: Widget
metadata:
  name: w1
spec:
  name: changed-via-status
'
expect 409 "apply spec via /status conflicts (1.20 behaviour)"
req PATCH "$W/w1/status?fieldManager=test&force=true" application/apply-patch+yaml \
'apiVersion: smoke.nsq.io/v1alpha1
kind: Widget
metadata:
  name: w1
spec:
  name: changed-via-status
status:
  phase: Ready
  readyReplicas: 3
'
expect 200 "forced apply with spec via /status"
contains '"name":"good-name"' "spec change via /status ignored"

# --- server-side apply on the main resource (create via apply, then conflict)
req PATCH "$W/w2?fieldManager=test" application/apply-patch+yaml \
'apiVersion: smoke.nsq.io/v1alpha1
kind: Widget
metadata:
  name: w2
spec:
  name: applied
  replicas: 2
'
expect 201 "server-side apply create w2"
req PATCH "$W/w2?fieldManager=other" application/apply-patch+yaml \
'apiVersion: smoke.nsq.io/v1alpha1
kind: Widget
metadata:
  name: w2
spec:
  name: stolen
'
expect 409 "apply by another manager conflicts"
req PATCH "$W/w2?fieldManager=other&force=true" application/apply-patch+yaml \
'apiVersion: smoke.nsq.io/v1alpha1
kind: Widget
metadata:
  name: w2
spec:
  name: stolen
'
expect 200 "forced apply by another manager"

# --- JSON merge patch on /status (what non-SSA controllers use)
req PATCH "$W/w1/status" application/merge-patch+json '{"status":{"phase":"Degraded"}}'
expect 200 "merge-patch w1/status"
contains '"phase":"Degraded"' "merge-patched status"

# --- schema violation -> 422
req POST "$W" application/json \
  '{"apiVersion":"smoke.nsq.io/v1alpha1","kind":"Widget","metadata":{"name":"bad"},"spec":{"name":"Bad_Name"}}'
expect 422 "object violating pattern rejected"
contains 'spec.name' "422 message names the field"
req PATCH "$W/w1?fieldManager=test" application/apply-patch+yaml \
'apiVersion: smoke.nsq.io/v1alpha1
kind: Widget
metadata:
  name: w1
spec:
  name: "UPPER"
'
expect 422 "apply violating pattern rejected"

# --- watch returns events (short timeout)
WATCH=$(curl -sS --max-time 5 --cacert "$APISERVER_CA" -H "Authorization: Bearer $APISERVER_TOKEN" \
  "$APISERVER_URL$W?watch=true&timeoutSeconds=1" || true)
case "$WATCH" in *'"type":"ADDED"'*) log "ok: watch on widgets streams ADDED events" ;;
  *) fail "watch returned no ADDED events: $WATCH" ;; esac

# --- coordination.k8s.io/v1 Lease
L=/apis/coordination.k8s.io/v1/namespaces/smoke/leases
req POST "$L" application/json \
  '{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"leader"},"spec":{"holderIdentity":"pod-a","leaseDurationSeconds":15,"acquireTime":"2024-01-01T00:00:00.000000Z","renewTime":"2024-01-01T00:00:00.000000Z","leaseTransitions":0}}'
expect 201 "create Lease"
RV=$(printf '%s' "$BODY" | tr -d '\n ' | sed -n 's/.*"resourceVersion":"\([0-9]*\)".*/\1/p')
[ -n "$RV" ] || fail "no resourceVersion in Lease: $BODY"
LEASE_PUT() {
  req PUT "$L/leader" application/json \
    "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\",\"metadata\":{\"name\":\"leader\",\"resourceVersion\":\"$1\"},\"spec\":{\"holderIdentity\":\"$2\",\"leaseDurationSeconds\":15,\"acquireTime\":\"2024-01-01T00:00:10.000000Z\",\"renewTime\":\"2024-01-01T00:00:10.000000Z\",\"leaseTransitions\":1}}"
}
LEASE_PUT "$RV" pod-b
expect 200 "update Lease (holder pod-b)"
contains '"holderIdentity":"pod-b"' "updated Lease holder"
LEASE_PUT "$RV" pod-c
expect 409 "update Lease with stale resourceVersion conflicts"
req PATCH "$L/leader" application/merge-patch+json '{"spec":{"renewTime":"2024-01-01T00:00:20.000000Z"}}'
expect 200 "merge-patch Lease renewTime"

# --- built-in objects an operator / Helm chart typically creates (they are only
# stored: there is no controller-manager, scheduler or kubelet)
req POST /api/v1/namespaces/smoke/serviceaccounts application/json \
  '{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"nsqd"}}'
expect 201 "create ServiceAccount"
req POST /api/v1/namespaces/smoke/configmaps application/json \
  '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"},"data":{"k":"v"}}'
expect 201 "create ConfigMap"
req POST /api/v1/namespaces/smoke/services application/json \
  '{"apiVersion":"v1","kind":"Service","metadata":{"name":"nsqd"},"spec":{"clusterIP":"None","selector":{"app":"nsqd"},"ports":[{"name":"tcp","port":4150}]}}'
expect 201 "create headless Service"
STS='{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"nsqd"},"spec":{"serviceName":"nsqd","replicas":3,"selector":{"matchLabels":{"app":"nsqd"}},"template":{"metadata":{"labels":{"app":"nsqd"}},"spec":{"serviceAccountName":"nsqd","containers":[{"name":"nsqd","image":"example/nsqd:1","ports":[{"containerPort":4150}]}]}},"volumeClaimTemplates":[{"metadata":{"name":"data"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}]}}'
req POST /apis/apps/v1/namespaces/smoke/statefulsets application/json "$STS"
expect 201 "create StatefulSet"
req POST /api/v1/namespaces/smoke/pods application/json \
  '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"app":"nsqd"}},"spec":{"containers":[{"name":"c","image":"busybox"}]}}'
expect 201 "create Pod without a default ServiceAccount (ServiceAccount admission off)"
req POST /apis/policy/v1beta1/namespaces/smoke/poddisruptionbudgets application/json \
  '{"apiVersion":"policy/v1beta1","kind":"PodDisruptionBudget","metadata":{"name":"nsqd"},"spec":{"maxUnavailable":1,"selector":{"matchLabels":{"app":"nsqd"}}}}'
expect 201 "create PodDisruptionBudget (policy/v1beta1; policy/v1 needs 1.21)"
req POST /api/v1/namespaces/smoke/serviceaccounts/nsqd/token application/json \
  '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"audiences":["https://kubernetes.default.svc.cluster.local"],"expirationSeconds":600}}'
expect 201 "TokenRequest for ServiceAccount nsqd"
SA_TOKEN=$(printf '%s' "$BODY" | tr -d '\n ' | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
[ -n "$SA_TOKEN" ] || fail "no token in TokenRequest response"
# the service-account token authenticates; RBAC denies it by default
CODE=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$APISERVER_CA" \
  -H "Authorization: Bearer $SA_TOKEN" "$APISERVER_URL/api/v1/namespaces/smoke/pods")
[ "$CODE" = 403 ] || fail "service-account token list pods: expected 403, got $CODE"
log "ok: service-account token authenticates, RBAC forbids (HTTP 403)"

# --- kubeconfig works with kubectl, if we have one
if [ -n "${KUBECTL_BIN:-}" ] && [ -x "$KUBECTL_BIN" ]; then
  KUBECONFIG="$DIR/kubeconfig" "$KUBECTL_BIN" get widgets -n smoke >&2 \
    || fail "kubectl with $DIR/kubeconfig"
  log "ok: kubectl ($KUBECTL_BIN) works with the kubeconfig"
fi

# --- delete
req DELETE "$W/w1"
expect 200 "delete w1"

log "ALL OK"
