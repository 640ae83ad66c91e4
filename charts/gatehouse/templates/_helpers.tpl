{{/* Names, labels and the shared pieces of the pod specs. */}}

{{- define "gatehouse.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "gatehouse.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: pass (list $ "server"). */}}
{{- define "gatehouse.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ $.Chart.Name }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "gatehouse.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "gatehouse.publicUrl" -}}
{{- required "publicUrl is required: the base URL clients reach the token service at, e.g. https://auth.example.com" .Values.publicUrl | trimSuffix "/" -}}
{{- end -}}

{{/* The Secret (key "password") holding the embedded Redis's generated password. */}}
{{- define "gatehouse.embeddedRedisSecret" -}}
{{- printf "%s-redis" (include "gatehouse.fullname" .) -}}
{{- end -}}

{{- define "gatehouse.kekSecret" -}}
{{- .Values.keyEncryptionKey.existingSecret | default (printf "%s-kek" (include "gatehouse.fullname" .)) -}}
{{- end -}}

{{/* The store URL both components use. */}}
{{- define "gatehouse.storeUrl" -}}
{{- if .Values.redis.embedded.enabled -}}
redis://{{ include "gatehouse.fullname" . }}-redis:6379/0
{{- else -}}
{{- $url := required "redis.url is required (or set redis.embedded.enabled for an evaluation Redis)" .Values.redis.url -}}
{{- if and .Values.redis.tls (hasPrefix "redis://" $url) -}}
{{- $url = printf "rediss://%s" (trimPrefix "redis://" $url) -}}
{{- else if and .Values.redis.tls (hasPrefix "redis+cluster://" $url) -}}
{{- $url = printf "rediss+cluster://%s" (trimPrefix "redis+cluster://" $url) -}}
{{- else if and .Values.redis.tls (hasPrefix "redis+sentinel://" $url) -}}
{{- $url = printf "rediss+sentinel://%s" (trimPrefix "redis+sentinel://" $url) -}}
{{- end -}}
{{- $url -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by the operator and the servers. */}}
{{- define "gatehouse.commonEnv" -}}
- name: GATEHOUSE_STORE
  value: {{ include "gatehouse.storeUrl" . | quote }}
{{- if .Values.redis.embedded.enabled }}
- name: GATEHOUSE_STORE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "gatehouse.embeddedRedisSecret" . }}
      key: password
{{- else if .Values.redis.password.existingSecret }}
- name: GATEHOUSE_STORE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.password.existingSecret }}
      key: {{ .Values.redis.password.key }}
{{- end }}
{{- with .Values.redis.sentinelPassword.existingSecret }}
{{- $storeUrl := include "gatehouse.storeUrl" $ }}
{{- if not (or (hasPrefix "redis+sentinel://" $storeUrl) (hasPrefix "rediss+sentinel://" $storeUrl)) }}
{{- fail "redis.sentinelPassword is for a Sentinel URL: redis.url redis+sentinel://..." }}
{{- end }}
- name: GATEHOUSE_STORE_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.redis.sentinelPassword.key }}
{{- end }}
{{- with .Values.redis.username }}
{{- if not $.Values.redis.password.existingSecret }}
{{- fail "redis.username needs its password: set redis.password.existingSecret" }}
{{- end }}
- name: GATEHOUSE_STORE_USERNAME
  value: {{ . | quote }}
{{- end }}
{{- if .Values.redis.caConfigMap.name }}
- name: GATEHOUSE_STORE_CA_FILE
  value: /etc/gatehouse/redis-ca/{{ .Values.redis.caConfigMap.key }}
{{- end }}
- name: GATEHOUSE_PUBLIC_URL
  value: {{ include "gatehouse.publicUrl" . | quote }}
- name: GATEHOUSE_KEY_ENCRYPTION_KEY_FILE
  value: /etc/gatehouse/kek/kek
- name: GATEHOUSE_METRICS_LISTEN
  value: "0.0.0.0:9090"
- name: GATEHOUSE_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- if not (has .Values.redis.familyLayout (list "compact" "hash" "sets")) }}
{{- fail "redis.familyLayout is compact, hash or sets" }}
{{- end }}
- name: GATEHOUSE_FAMILY_LAYOUT
  value: {{ .Values.redis.familyLayout | quote }}
{{- if .Values.redis.allowEvictingStore }}
- name: GATEHOUSE_ALLOW_EVICTING_STORE
  value: "true"
{{- end }}
{{- end -}}

{{- define "gatehouse.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "gatehouse.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
{{- end -}}

{{/* The Redis CA (redis.caConfigMap), mounted where GATEHOUSE_STORE_CA_FILE points. */}}
{{- define "gatehouse.redisCaMount" -}}
{{- if .Values.redis.caConfigMap.name }}
- name: redis-ca
  mountPath: /etc/gatehouse/redis-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "gatehouse.redisCaVolume" -}}
{{- with .Values.redis.caConfigMap }}
{{- if .name }}
- name: redis-ca
  configMap:
    name: {{ .name }}
    items:
      - key: {{ .key }}
        path: {{ .key }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "gatehouse.kekVolume" -}}
- name: kek
  secret:
    secretName: {{ include "gatehouse.kekSecret" . }}
    defaultMode: 0400
    items:
      - key: kek
        path: kek
{{- end -}}

{{- define "gatehouse.probes" -}}
livenessProbe:
  httpGet: {path: /healthz, port: metrics}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: metrics}
  periodSeconds: 5
  failureThreshold: 2
startupProbe:
  httpGet: {path: /healthz, port: metrics}
  periodSeconds: 2
  failureThreshold: 30
{{- end -}}

{{- define "gatehouse.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: "9090"
prometheus.io/path: /metrics
{{- end -}}
