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
