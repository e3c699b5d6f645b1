{{/* Names and labels. */}}
{{- define "balsa.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 40 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "balsa.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "balsa.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "balsa.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if eq $tag "latest" -}}{{- fail "image.tag: use a version, not latest (pods would run different builds)" -}}{{- end -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}

{{- define "balsa.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ .Values.serviceAccount.name | default (include "balsa.fullname" .) }}{{- else -}}{{ .Values.serviceAccount.name | default "default" }}{{- end -}}
{{- end -}}

{{- define "balsa.multiZone" -}}{{ if eq .Values.deploymentMode "multi-zone" }}true{{ end }}{{- end -}}

{{- define "balsa.headless" -}}{{ include "balsa.fullname" . }}-ingester-headless{{- end -}}

{{/* The gRPC addresses of the first ingester of every zone: --join seeds. */}}
{{- define "balsa.seeds" -}}
{{- $root := . -}}
{{- $seeds := list -}}
{{- range .Values.zones -}}
{{- $seeds = append $seeds (printf "%s-ingester-%s-0.%s.%s.svc.cluster.local:9095" (include "balsa.fullname" $root) .name (include "balsa.headless" $root) $root.Release.Namespace) -}}
{{- end -}}
{{ join "," $seeds }}
{{- end -}}

{{/* Volumes and mounts every Balsa container has: config, tokens, TLS. */}}
{{- define "balsa.volumes" -}}
- name: config
  configMap:
    name: {{ include "balsa.fullname" . }}-config
{{- if .Values.authTokensSecret }}
- name: auth
  secret:
    secretName: {{ .Values.authTokensSecret }}
{{- end }}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ required "tls.secretName is required with tls.enabled" .Values.tls.secretName }}
{{- end }}
{{- end -}}

{{- define "balsa.mounts" -}}
- name: config
  mountPath: /etc/balsa
  readOnly: true
{{- if .Values.authTokensSecret }}
- name: auth
  mountPath: /etc/balsa-auth
  readOnly: true
{{- end }}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/balsa-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "balsa.env" -}}
{{- if and (eq .Values.storage.type "s3") .Values.storage.s3.credentialsSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom: {secretKeyRef: {name: {{ .Values.storage.s3.credentialsSecret }}, key: AWS_ACCESS_KEY_ID}}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom: {secretKeyRef: {name: {{ .Values.storage.s3.credentialsSecret }}, key: AWS_SECRET_ACCESS_KEY}}
{{- end }}
{{- end -}}

{{- define "balsa.ports" -}}
- name: http
  containerPort: 3100
- name: grpc
  containerPort: 9095
{{- end -}}

{{/* Ready once the process serves queries and pushes. */}}
{{- define "balsa.readiness" -}}
httpGet: {path: /ready, port: http}
periodSeconds: 5
failureThreshold: 3
{{- end -}}

{{/* Alive while the process answers at all: a node catching up from its
log or a snapshot is not ready, but must not be killed. */}}
{{- define "balsa.liveness" -}}
httpGet: {path: /loki/api/v1/status/buildinfo, port: http}
periodSeconds: 10
failureThreshold: 6
timeoutSeconds: 5
{{- end -}}

{{- define "balsa.securityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
{{- end -}}

{{- define "balsa.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}
