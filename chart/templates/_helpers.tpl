{{/* Name of the chart. */}}
{{- define "tls-steal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Base name of the release's objects: "tls-steal" for a release named tls-steal. */}}
{{- define "tls-steal.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The webhook's Deployment, Service, ServiceAccount, RBAC and MutatingWebhookConfiguration. */}}
{{- define "tls-steal.webhookName" -}}
{{- printf "%s-webhook" (include "tls-steal.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tls-steal.certSecretName" -}}
{{- if eq .Values.certificate.mode "secret" }}
{{- required "certificate.secret.name is required when certificate.mode is secret" .Values.certificate.secret.name }}
{{- else if eq .Values.certificate.mode "selfManaged" }}
{{- default (printf "%s-tls" (include "tls-steal.webhookName" .)) .Values.certificate.selfManaged.secretName }}
{{- else }}
{{- printf "%s-tls" (include "tls-steal.webhookName" .) }}
{{- end }}
{{- end }}

{{- define "tls-steal.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/part-of: tls-steal
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The webhook's pods carry these; app.kubernetes.io/name is also its --self-label, and the
     MutatingWebhookConfiguration's objectSelector excludes it, so the webhook never injects itself. */}}
{{- define "tls-steal.selectorLabels" -}}
app.kubernetes.io/name: tls-steal-webhook
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tls-steal.image" -}}
{{- printf "%s:%s" .repository (default $.appVersion .tag | toString) }}
{{- end }}

{{/* =====================================================================================
     THE ARGUMENTS OF `tls-steal-webhook serve` — the one place to adjust when its flags change
     (see webhook/src/serve.rs: ServeArgs, SidecarArgs).
     ===================================================================================== */}}
{{- define "tls-steal.webhookArgs" -}}
- serve
- --listen=0.0.0.0:{{ .Values.webhook.port }}
- --namespace={{ .Release.Namespace }}
- --service-name={{ include "tls-steal.webhookName" . }}
- --sidecar-image={{ include "tls-steal.image" (merge (dict "appVersion" .Chart.AppVersion) .Values.image.sidecar) }}
- --image-pull-policy={{ .Values.image.sidecar.pullPolicy }}
- --sidecar-mode={{ .Values.sidecar.mode }}
- --sidecar-drain-delay={{ .Values.sidecar.drainDelaySeconds }}
- --sidecar-max-connections={{ .Values.sidecar.maxConnections }}
- --sidecar-workers={{ .Values.sidecar.workers }}
- --session-authorization={{ .Values.sessions.authorization }}
{{- with .Values.sessions.publicKeys }}
- --session-keys={{ . }}
{{- end }}
- --session-require-filter={{ .Values.sessions.requireFilter }}
- --session-allow-mirror={{ .Values.sessions.allowMirror }}
- --session-max-duration={{ .Values.sessions.maxDuration }}
{{- with .Values.sidecar.resources }}
{{- with .requests }}
{{- if .cpu }}
- --sidecar-cpu-request={{ .cpu }}
{{- end }}
{{- if .memory }}
- --sidecar-memory-request={{ .memory }}
{{- end }}
{{- end }}
{{- with .limits }}
{{- if .cpu }}
- --sidecar-cpu-limit={{ .cpu }}
{{- end }}
{{- if .memory }}
- --sidecar-memory-limit={{ .memory }}
{{- end }}
{{- end }}
{{- end }}
- --self-label=app.kubernetes.io/name=tls-steal-webhook
- --drain-delay={{ .Values.webhook.drainDelaySeconds }}
{{- /* Every mode serves the Secret's files (reloaded on change); selfManaged: the controller keeps that Secret. */}}
- --tls-cert-file=/etc/tls-steal/tls/tls.crt
- --tls-key-file=/etc/tls-steal/tls/tls.key
{{- range .Values.webhook.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
