{{/* Names ------------------------------------------------------------------------ */}}
{{- define "codeact.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "codeact.fullname" -}}
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

{{/* The namespace of sandbox Pods. */}}
{{- define "codeact.sandboxNamespace" -}}
{{- default (printf "%s-sandboxes" (include "codeact.fullname" .)) .Values.sandbox.namespace | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* CODEACT_CHANNEL_PREFIX, also the codeact.deployment label of sandbox Pods. */}}
{{- define "codeact.channelPrefix" -}}
{{- default (include "codeact.fullname" .) .Values.app.channelPrefix -}}
{{- end -}}

{{- define "codeact.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "codeact.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: codeact-web
{{- end -}}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "web"). */}}
{{- define "codeact.selectorLabels" -}}
app.kubernetes.io/name: {{ include "codeact.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "codeact.componentLabels" -}}
{{ include "codeact.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "codeact.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion (toString .Values.image.tag)) -}}
{{- end -}}

{{- define "codeact.proxyImage" -}}
{{- $img := .Values.webAccess.proxy.image -}}
{{- if $img.repository -}}
{{- printf "%s:%s" $img.repository (default "latest" (toString $img.tag)) -}}
{{- else -}}
{{- include "codeact.image" . -}}
{{- end -}}
{{- end -}}

{{/* Secrets ---------------------------------------------------------------------- */}}
{{/* The chart's own Secret holds whichever secrets have no existingSecret. */}}
{{- define "codeact.secretName" -}}
{{- printf "%s-secrets" (include "codeact.fullname" .) -}}
{{- end -}}

{{- define "codeact.hasDatabasePassword" -}}
{{- if or .Values.database.password .Values.database.existingSecret }}true{{ end -}}
{{- end -}}
{{- define "codeact.hasRedisPassword" -}}
{{- if or .Values.redis.password .Values.redis.existingSecret }}true{{ end -}}
{{- end -}}
{{- define "codeact.hasModelApiKey" -}}
{{- if or .Values.model.apiKey .Values.model.existingSecret }}true{{ end -}}
{{- end -}}

{{/* One projected-volume source for secret file $file: from its existingSecret, or
     from the chart's Secret. (dict "ctx" $ "cfg" .Values.database "file" "database-password") */}}
{{- define "codeact.secretSource" -}}
- secret:
    {{- if .cfg.existingSecret }}
    name: {{ .cfg.existingSecret }}
    items:
      - key: {{ .cfg.existingSecretKey }}
        path: {{ .file }}
    {{- else }}
    name: {{ include "codeact.secretName" .ctx }}
    items:
      - key: {{ .file }}
        path: {{ .file }}
    {{- end }}
{{- end -}}

{{/* The secrets volume of an app Pod; (dict "ctx" $ "model" true) adds the model's key
     (the worker alone gets it). */}}
{{- define "codeact.secretsVolume" -}}
{{- $ctx := .ctx -}}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
      {{- include "codeact.secretSource" (dict "ctx" $ctx "cfg" $ctx.Values.djangoSecretKey "file" "secret-key") | nindent 6 }}
      {{- if include "codeact.hasDatabasePassword" $ctx }}
      {{- include "codeact.secretSource" (dict "ctx" $ctx "cfg" $ctx.Values.database "file" "database-password") | nindent 6 }}
      {{- end }}
      {{- if include "codeact.hasRedisPassword" $ctx }}
      {{- include "codeact.secretSource" (dict "ctx" $ctx "cfg" $ctx.Values.redis "file" "redis-password") | nindent 6 }}
      {{- end }}
      {{- if and .model (include "codeact.hasModelApiKey" $ctx) }}
      {{- include "codeact.secretSource" (dict "ctx" $ctx "cfg" $ctx.Values.model "file" "model-api-key") | nindent 6 }}
      {{- end }}
{{- end -}}

{{/* Security ---------------------------------------------------------------------- */}}
{{- define "codeact.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
fsGroup: 1000
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "codeact.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Environment -------------------------------------------------------------------- */}}
{{- define "codeact.egressProxyHost" -}}
{{- if .Values.webAccess.proxy.clusterIP -}}
{{- .Values.webAccess.proxy.clusterIP -}}
{{- else -}}
{{- printf "%s-egress.%s.svc" (include "codeact.fullname" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- define "codeact.egressProxyUrl" -}}
{{- if .Values.webAccess.enabled -}}
{{- printf "http://%s:%v" (include "codeact.egressProxyHost" .) .Values.webAccess.proxy.port -}}
{{- end -}}
{{- end -}}

{{- define "codeact.allowedHosts" -}}
{{- $web := printf "%s-web" (include "codeact.fullname" .) -}}
{{- $hosts := list $web (printf "%s.%s.svc" $web .Release.Namespace) -}}
{{- if .Values.ingress.enabled -}}
{{- $hosts = concat .Values.ingress.hosts $hosts -}}
{{- end -}}
{{- join "," $hosts -}}
{{- end -}}

{{/* The environment every app container shares (web, worker, beat, migrations). */}}
{{- define "codeact.appEnv" -}}
{{- $tls := and .Values.ingress.enabled .Values.ingress.tls -}}
- name: CODEACT_PROFILE
  value: production
- name: CODEACT_CHANNEL_PREFIX
  value: {{ include "codeact.channelPrefix" . | quote }}
- name: SECRET_KEY_FILE
  value: /etc/codeact/secrets/secret-key
- name: DATABASE_URL
  value: {{ .Values.database.url | quote }}
{{- if include "codeact.hasDatabasePassword" . }}
- name: DATABASE_PASSWORD_FILE
  value: /etc/codeact/secrets/database-password
{{- end }}
- name: REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- if include "codeact.hasRedisPassword" . }}
- name: REDIS_PASSWORD_FILE
  value: /etc/codeact/secrets/redis-password
{{- end }}
- name: ALLOWED_HOSTS
  value: {{ include "codeact.allowedHosts" . | quote }}
{{- if not $tls }}
# No TLS at the Ingress (a dev cluster): no HTTPS redirect, no Secure cookies, no HSTS.
- name: SECURE_SSL_REDIRECT
  value: "false"
- name: SECURE_COOKIES
  value: "false"
- name: SECURE_HSTS_SECONDS
  value: "0"
{{- end }}
- name: CODEACT_TRUSTED_PROXIES
  value: {{ .Values.app.trustedProxies | quote }}
- name: CODEACT_METRICS_ALLOW
  value: {{ .Values.app.metricsAllow | quote }}
- name: CODEACT_MAX_BODY_KB
  value: {{ .Values.app.maxBodyKB | quote }}
- name: CODEACT_MAX_UPLOAD_BODY_MB
  value: {{ .Values.app.maxUploadBodyMB | quote }}
- name: CODEACT_LOG_FORMAT
  value: {{ .Values.app.logFormat | quote }}
- name: CODEACT_SIGNUP
  value: {{ .Values.app.signup | quote }}
- name: CODEACT_MODEL_URL
  value: {{ default (printf "http://%s-model:8081/v1" (include "codeact.fullname" .)) .Values.model.url | quote }}
- name: CODEACT_MODEL_NAME
  value: {{ .Values.model.name | quote }}
- name: CODEACT_MODEL_LABEL
  value: {{ .Values.model.label | quote }}
{{- if .Values.model.actionFormat }}
- name: CODEACT_MODEL_ACTION_FORMAT
  value: {{ .Values.model.actionFormat | quote }}
{{- end }}
- name: CODEACT_EGRESS
  value: {{ ternary "proxy" "off" .Values.webAccess.enabled | quote }}
- name: CODEACT_EGRESS_DEFAULT
  value: {{ .Values.webAccess.defaultOn | quote }}
# The root filesystem is read-only: the web-access state directory goes to /tmp.
- name: CODEACT_EGRESS_STATE_DIR
  value: /tmp/egress
{{- with .Values.app.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "codeact.appVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: secrets
  mountPath: /etc/codeact/secrets
  readOnly: true
{{- end -}}

{{- define "codeact.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.app.tmpSizeLimit }}
{{- end -}}
