{{/*
Names. Every object is named "<fullname>-operator" or "<fullname>-agent";
fullname is the release name, followed by the chart name unless the release
name already contains it, cut to leave room for those suffixes within the
63 characters of a label value.
*/}}
{{- define "bulkhead.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 54 | trimSuffix "-" -}}
{{- end -}}

{{- define "bulkhead.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "bulkhead.operator.name" -}}
{{- include "bulkhead.fullname" . }}-operator
{{- end -}}

{{- define "bulkhead.agent.name" -}}
{{- include "bulkhead.fullname" . }}-agent
{{- end -}}

{{/* Labels on every object. */}}
{{- define "bulkhead.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bulkhead
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* Selector labels of one component: include with (list . "operator"). */}}
{{- define "bulkhead.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "bulkhead.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "bulkhead.componentLabels" -}}
{{ include "bulkhead.labels" (index . 0) }}
{{ include "bulkhead.selectorLabels" . }}
{{- end -}}

{{/* An image reference from {repository, tag, digest}: include with (list . .Values.agent.image). */}}
{{- define "bulkhead.image" -}}
{{- $root := index . 0 -}}
{{- $image := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The username the API server gives the agent's ServiceAccount. */}}
{{- define "bulkhead.agent.username" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "bulkhead.agent.name" . }}
{{- end -}}

{{- define "bulkhead.collector.name" -}}
{{- include "bulkhead.fullname" . }}-collector
{{- end -}}

{{/* The collector's URL, as the agents reach it. */}}
{{- define "bulkhead.collector.url" -}}
{{ ternary "https" "http" .Values.collector.tls.enabled }}://{{ include "bulkhead.collector.name" . }}.{{ .Release.Namespace }}.svc:{{ .Values.collector.port }}
{{- end -}}

{{/* The Secret (kubernetes.io/tls, with ca.crt) the collector serves HTTPS with. */}}
{{- define "bulkhead.collector.tlsSecret" -}}
{{- .Values.collector.tls.existingSecret | default (printf "%s-tls" (include "bulkhead.collector.name" .)) -}}
{{- end -}}

{{/* host:port from an address and a port; IPv6 addresses in brackets. */}}
{{- define "bulkhead.hostPort" -}}
{{- $addr := index . 0 -}}
{{- if contains ":" $addr -}}
[{{ $addr }}]:{{ index . 1 }}
{{- else -}}
{{ $addr }}:{{ index . 1 }}
{{- end -}}
{{- end -}}

{{/* Fails unless the cluster serves monitoring.coreos.com/v1 <kind>: include with (list . "PodMonitor" "agent.metrics.podMonitor.enabled"). */}}
{{- define "bulkhead.requireMonitoring" -}}
{{- $root := index . 0 -}}
{{- $kind := index . 1 -}}
{{- $caps := $root.Capabilities.APIVersions -}}
{{- if not (or ($caps.Has (printf "monitoring.coreos.com/v1/%s" $kind)) ($caps.Has "monitoring.coreos.com/v1")) -}}
{{- fail (printf "%s is true, but the cluster has no %s (monitoring.coreos.com/v1): install the Prometheus operator's CRDs first, or set it to false (with helm template, pass --api-versions monitoring.coreos.com/v1)" (index . 2) $kind) -}}
{{- end -}}
{{- end -}}
