{{/*
Names, labels and the addresses the components use to find each other.
*/}}

{{- define "nsq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's prefix: the release name, unless it already holds the chart's. */}}
{{- define "nsq.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "nsq.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Object names. StatefulSet pod names add "-N", so keep these short. */}}
{{- define "nsq.lookupd.fullname" -}}
{{- printf "%s-nsqlookupd" (include "nsq.fullname" .) | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- define "nsq.nsqd.fullname" -}}
{{- printf "%s-nsqd" (include "nsq.fullname" .) | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- define "nsq.nsqd.headless" -}}
{{- printf "%s-headless" (include "nsq.nsqd.fullname" .) -}}
{{- end -}}
{{- define "nsq.operator.fullname" -}}
{{- printf "%s-operator" (include "nsq.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels. Call with (dict "ctx" $ "component" "nsqd").
*/}}
{{- define "nsq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nsq.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "nsq.labels" -}}
{{ include "nsq.selectorLabels" . }}
app.kubernetes.io/part-of: {{ include "nsq.name" .ctx }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ include "nsq.chart" .ctx }}
{{- end -}}

{{/* An image reference. Call with (dict "ctx" $ "image" .Values.nsqd.image). */}}
{{- define "nsq.image" -}}
{{- $tag := .image.tag | default .ctx.Values.image.tag | default .ctx.Chart.AppVersion -}}
{{- if .ctx.Values.image.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .ctx.Values.image.registry) .image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
The DNS suffix after "<service>.": "<namespace>.svc", plus the cluster domain
if one is set. $(POD_NAMESPACE) would do for the pods' own arguments, but the
addresses also appear in NOTES.txt and the operator's arguments; the release
namespace is the same value.
*/}}
{{- define "nsq.dnsSuffix" -}}
{{- if .Values.clusterDomain -}}
{{- printf "%s.svc.%s" .Release.Namespace (trimSuffix "." .Values.clusterDomain) -}}
{{- else -}}
{{- printf "%s.svc" .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* Every nsqlookupd pod's stable host name, one per line. */}}
{{- define "nsq.lookupd.hosts" -}}
{{- $name := include "nsq.lookupd.fullname" . -}}
{{- $suffix := include "nsq.dnsSuffix" . -}}
{{- range $i := until (int .Values.lookupd.replicas) }}
{{ printf "%s-%d.%s.%s" $name $i $name $suffix }}
{{- end -}}
{{- end -}}

{{/*
Flags from a map, rendered as --name=value in name order. YAML and JSON
numbers arrive as float64; whole numbers are printed as integers (1048576, not
1.048576e+06).
*/}}
{{/*
A Kubernetes memory quantity ("256Mi", "1G", "1.5Gi", 1073741824) in bytes;
0 when it cannot be read.
*/}}
{{- define "nsq.quantityBytes" -}}
{{- $q := toString . -}}
{{- $units := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "K" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- $bytes := 0 -}}
{{- $matched := false -}}
{{- range $suffix, $mult := $units -}}
{{- if and (not $matched) (hasSuffix $suffix $q) -}}
{{- $bytes = mulf (float64 (trimSuffix $suffix $q)) $mult | int64 -}}
{{- $matched = true -}}
{{- end -}}
{{- end -}}
{{- if not $matched -}}
{{- $bytes = float64 $q | int64 -}}
{{- end -}}
{{- $bytes -}}
{{- end -}}

{{/*
--max-mem-queue-bytes for the brokers, or nothing: nsqd.maxMemQueueBytes,
"auto" meaning an eighth of the memory limit (none without a limit). A value
in nsqd.flags wins.
*/}}
{{- define "nsq.nsqd.maxMemQueueBytes" -}}
{{- $v := .Values.nsqd -}}
{{- if not (hasKey ($v.flags | default dict) "max-mem-queue-bytes") -}}
{{- $setting := $v.maxMemQueueBytes -}}
{{- if kindIs "invalid" $setting }}{{ $setting = "auto" }}{{ end -}}
{{- if eq (toString $setting) "auto" -}}
{{- $limit := dig "limits" "memory" "" ($v.resources | default dict) -}}
{{- if $limit -}}
{{- $bytes := include "nsq.quantityBytes" $limit | int64 -}}
{{- if gt $bytes 0 -}}
{{- div $bytes 8 -}}
{{- end -}}
{{- end -}}
{{- else if gt (int64 $setting) 0 -}}
{{- int64 $setting -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "nsq.flags" -}}
{{- range $name, $value := . }}
{{- if kindIs "float64" $value }}
{{- if eq $value (float64 (int64 $value)) }}
- --{{ $name }}={{ int64 $value }}
{{- else }}
- --{{ $name }}={{ $value }}
{{- end }}
{{- else if kindIs "invalid" $value }}
{{- else }}
- --{{ $name }}={{ $value }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Soft anti-affinity: prefer one pod of a component per node. Used when the
component's affinity value is empty. Call with (dict "ctx" $ "component" "nsqd").
*/}}
{{- define "nsq.softAntiAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "nsq.selectorLabels" . | nindent 12 }}
{{- end -}}

{{/*
The PodDisruptionBudget API the cluster serves: policy/v1 since 1.21,
policy/v1beta1 before (and gone in 1.25). Against a cluster Helm knows the
served kinds; rendering offline (helm template, lint) it knows only group
versions, so the Kubernetes version decides.
*/}}
{{- define "nsq.pdb.apiVersion" -}}
{{- $caps := .Capabilities -}}
{{- if $caps.APIVersions.Has "policy/v1/PodDisruptionBudget" -}}
policy/v1
{{- else if $caps.APIVersions.Has "policy/v1beta1/PodDisruptionBudget" -}}
policy/v1beta1
{{- else if semverCompare ">=1.21-0" $caps.KubeVersion.Version -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end -}}
{{- end -}}

{{/*
Scheduling fields shared by every workload. Call with
(dict "ctx" $ "component" "nsqd" "values" .Values.nsqd).
*/}}
{{- define "nsq.scheduling" -}}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
affinity:
  {{- if .values.affinity }}
  {{- toYaml .values.affinity | nindent 2 }}
  {{- else }}
  {{- include "nsq.softAntiAffinity" (dict "ctx" .ctx "component" .component) | nindent 2 }}
  {{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/*
Broker TLS (nsqd.tls). TLS is on when there is a certificate source: an
existing Secret (nsqd.tls.secretName) or a cert-manager Certificate
(nsqd.tls.certManager.enabled). Both are mounted from one Secret at
nsq.nsqd.tls.mountPath.
*/}}
{{- define "nsq.nsqd.tls.mountPath" -}}
/etc/nsqd/tls
{{- end -}}

{{/* The Secret holding the broker's tls.crt and tls.key; empty with TLS off. */}}
{{- define "nsq.nsqd.tls.secretName" -}}
{{- $t := .Values.nsqd.tls -}}
{{- if $t.secretName -}}
{{- $t.secretName -}}
{{- else if $t.certManager.enabled -}}
{{- printf "%s-tls" (include "nsq.nsqd.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
--tls-required as nsqd will apply it: "false", "true" or "tcp-https". A
client certificate policy implies "true" (nsqd does the same). YAML and --set
turn true/false into booleans; the schema allows both spellings.
*/}}
{{- define "nsq.nsqd.tls.required" -}}
{{- if .Values.nsqd.tls.clientAuthPolicy -}}
true
{{- else -}}
{{- toString (.Values.nsqd.tls.required | default "false") -}}
{{- end -}}
{{- end -}}

{{/*
How the broker's API can be reached by the kubelet's probes, the preStop
hook and Prometheus: "http" (plain HTTP on 4151 answers), "https" (only HTTPS
on 4152 answers: tls.required "true") or "mtls" (HTTPS wants a client
certificate, which the kubelet cannot show).
*/}}
{{- define "nsq.nsqd.tls.localAccess" -}}
{{- if .Values.nsqd.tls.clientAuthPolicy -}}
mtls
{{- else if eq (include "nsq.nsqd.tls.required" .) "true" -}}
https
{{- else -}}
http
{{- end -}}
{{- end -}}

{{/*
Combinations nsqd would refuse, or that would leave part of the release
unable to work. Rendered (as nothing) by nsqd-statefulset.yaml.
*/}}
{{- define "nsq.nsqd.tls.check" -}}
{{- $t := .Values.nsqd.tls -}}
{{- $on := include "nsq.nsqd.tls.secretName" . -}}
{{- $required := include "nsq.nsqd.tls.required" . -}}
{{- if and $t.secretName $t.certManager.enabled -}}
{{- fail "nsqd.tls: set either secretName (an existing kubernetes.io/tls Secret) or certManager.enabled (cert-manager issues the Secret), not both" -}}
{{- end -}}
{{- if not $on -}}
{{- if $t.clientAuthPolicy -}}
{{- fail (printf "nsqd.tls.clientAuthPolicy=%s needs a certificate: set nsqd.tls.secretName to an existing kubernetes.io/tls Secret, or nsqd.tls.certManager.enabled=true" $t.clientAuthPolicy) -}}
{{- end -}}
{{- if ne $required "false" -}}
{{- fail (printf "nsqd.tls.required=%s needs a certificate: set nsqd.tls.secretName to an existing kubernetes.io/tls Secret, or nsqd.tls.certManager.enabled=true" $required) -}}
{{- end -}}
{{- if $t.minVersion -}}
{{- fail "nsqd.tls.minVersion needs a certificate: set nsqd.tls.secretName or nsqd.tls.certManager.enabled=true" -}}
{{- end -}}
{{- if $t.useCA -}}
{{- fail "nsqd.tls.useCA reads ca.crt from the TLS Secret: set nsqd.tls.secretName or nsqd.tls.certManager.enabled=true" -}}
{{- end -}}
{{- end -}}
{{- if $t.certManager.enabled -}}
{{- if not $t.certManager.issuerRef.name -}}
{{- fail "nsqd.tls.certManager.enabled needs nsqd.tls.certManager.issuerRef.name: the cert-manager Issuer or ClusterIssuer that signs the brokers' certificate" -}}
{{- end -}}
{{- $key := $t.certManager.privateKey -}}
{{- $size := int ($key.size | default 0) -}}
{{- if eq ($key.algorithm | default "RSA") "ECDSA" -}}
{{- if not (or (eq $size 256) (eq $size 384) (eq $size 521)) -}}
{{- fail (printf "nsqd.tls.certManager.privateKey: ECDSA keys are 256, 384 or 521 bits, not %d" $size) -}}
{{- end -}}
{{- else if lt $size 2048 -}}
{{- fail (printf "nsqd.tls.certManager.privateKey: RSA keys need at least 2048 bits, not %d" $size) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The names the brokers answer to, for their certificate: the client Service
(short, namespaced and .svc forms) and every broker's broadcast name under the
headless Service, plus the cluster-domain forms when clusterDomain is set.
*/}}
{{- define "nsq.nsqd.tls.dnsNames" -}}
{{- $svc := include "nsq.nsqd.fullname" . -}}
{{- $headless := include "nsq.nsqd.headless" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "*.%s.%s.svc" $headless $ns) -}}
{{- with .Values.clusterDomain -}}
{{- $domain := trimSuffix "." . -}}
{{- $names = append $names (printf "%s.%s.svc.%s" $svc $ns $domain) -}}
{{- $names = append $names (printf "*.%s.%s.svc.%s" $headless $ns $domain) -}}
{{- end -}}
{{- concat $names .Values.nsqd.tls.certManager.extraDnsNames | uniq | toYaml -}}
{{- end -}}

{{/*
The kubelet's check of a broker (startup, readiness, liveness): GET /ping on
plain HTTP; over HTTPS when plain HTTP is refused (the kubelet does not verify
certificates); only a TCP connect when HTTPS wants a client certificate,
because the kubelet has none to show.
*/}}
{{- define "nsq.nsqd.probe" -}}
{{- $access := include "nsq.nsqd.tls.localAccess" . -}}
{{- if eq $access "mtls" -}}
tcpSocket:
  port: https
{{- else if eq $access "https" -}}
httpGet:
  path: /ping
  port: https
  scheme: HTTPS
{{- else -}}
httpGet:
  path: /ping
  port: http
{{- end -}}
{{- end -}}
