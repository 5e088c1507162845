{{/* Names, labels and the env blocks shared by the api and worker Deployments. */}}

{{- define "leadgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "leadgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "leadgate.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "leadgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "leadgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "leadgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "leadgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "leadgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "leadgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "leadgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* One env entry from a Secret: (dict "var" NAME "ref" {name, key}); nothing if no name. */}}
{{- define "leadgate.secretEnv" -}}
{{- if .ref.name -}}
- name: {{ .var }}
  valueFrom:
    secretKeyRef:
      name: {{ .ref.name | quote }}
      key: {{ .ref.key | quote }}
{{- end -}}
{{- end -}}

{{/* LEADGATE_REDIS_URL: the Bitnami subchart's master (its password through $(REDIS_PASSWORD)),
     or the referenced Secret. */}}
{{- define "leadgate.redisEnv" -}}
{{- if .Values.redis.enabled -}}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ printf "%s-redis" .Release.Name | quote }}
      key: redis-password
- name: LEADGATE_REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s-redis-master:6379/0" .Release.Name | quote }}
{{- else -}}
{{- include "leadgate.secretEnv" (dict "var" "LEADGATE_REDIS_URL" "ref" .Values.secrets.redisUrl) -}}
{{- end -}}
{{- end -}}

{{/* The secrets the CRM endpoints name (secret_env), sorted by variable name. */}}
{{- define "leadgate.crmEnv" -}}
{{- range $var, $ref := .Values.secrets.crm }}
{{ include "leadgate.secretEnv" (dict "var" $var "ref" $ref) }}
{{- end -}}
{{- end -}}

{{/* Volumes both Deployments mount: config, rule packs, and /tmp. */}}
{{- define "leadgate.volumes" -}}
- name: config
  configMap:
    name: {{ include "leadgate.fullname" . }}-config
- name: rules
  configMap:
    name: {{ include "leadgate.fullname" . }}-rules
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end -}}

{{- define "leadgate.volumeMounts" -}}
- name: config
  mountPath: /etc/leadgate/config
  readOnly: true
- name: rules
  mountPath: /etc/leadgate/rules
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}
