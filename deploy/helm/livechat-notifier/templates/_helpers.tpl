{{/* Names, labels and the computed bits shared by the templates. */}}

{{- define "livechat-notifier.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "livechat-notifier.fullname" -}}
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

{{- define "livechat-notifier.selectorLabels" -}}
app.kubernetes.io/name: {{ include "livechat-notifier.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "livechat-notifier.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "livechat-notifier.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: worker
app.kubernetes.io/part-of: livechat
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "livechat-notifier.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "livechat-notifier.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "livechat-notifier.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Where Secrets are mounted as files (one projected volume). */}}
{{- define "livechat-notifier.secretsDir" -}}/etc/livechat-notifier/secrets{{- end }}

{{- define "livechat-notifier.sasl" -}}
{{- hasPrefix "SASL_" .Values.kafka.securityProtocol }}
{{- end }}

{{- define "livechat-notifier.tls" -}}
{{- hasSuffix "SSL" .Values.kafka.securityProtocol }}
{{- end }}

{{/* Whether the PrometheusRule is rendered: prometheusRule.enabled, defaulting to serviceMonitor.enabled. */}}
{{- define "livechat-notifier.prometheusRuleEnabled" -}}
{{- $enabled := .Values.prometheusRule.enabled }}
{{- if kindIs "invalid" $enabled }}{{ $enabled = .Values.serviceMonitor.enabled }}{{ end }}
{{- $enabled }}
{{- end }}

{{/* PromQL matchers for this release's worker series. */}}
{{- define "livechat-notifier.promSelector" -}}
{{- if .Values.prometheusRule.selector }}
{{- .Values.prometheusRule.selector }}
{{- else }}
{{- printf "namespace=%q,job=%q" .Release.Namespace (include "livechat-notifier.fullname" .) }}
{{- end }}
{{- end }}

{{/* Refuses combinations that cannot work; called from the Deployment. */}}
{{- define "livechat-notifier.validate" -}}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled exclude each other: KEDA creates its own HorizontalPodAutoscaler" }}
{{- end }}
{{- if eq (include "livechat-notifier.sasl" .) "true" }}
{{- if not .Values.kafka.sasl.passwordSecret.name }}
{{- fail (printf "kafka.sasl.passwordSecret.name is required with kafka.securityProtocol %s" .Values.kafka.securityProtocol) }}
{{- end }}
{{- if not (or .Values.kafka.sasl.username .Values.kafka.sasl.usernameSecret.name) }}
{{- fail (printf "kafka.sasl.username or kafka.sasl.usernameSecret.name is required with kafka.securityProtocol %s" .Values.kafka.securityProtocol) }}
{{- end }}
{{- end }}
{{- if and (ne (include "livechat-notifier.tls" .) "true") (or .Values.kafka.tls.caSecret.name .Values.kafka.tls.clientCertSecret.name) }}
{{- fail (printf "kafka.tls secrets are only used with SSL or SASL_SSL, not %s" .Values.kafka.securityProtocol) }}
{{- end }}
{{- if and .Values.push.apns.keySecret.name (not (and .Values.push.apns.keyId .Values.push.apns.teamId .Values.push.apns.topic)) }}
{{- fail "push.apns.keySecret needs push.apns.keyId, push.apns.teamId and push.apns.topic" }}
{{- end }}
{{- $managed := list "kafka_bootstrap_servers" "kafka_security_protocol" "kafka_sasl_mechanism" "kafka_sasl_username" "kafka_sasl_password_file" "kafka_ssl_ca_file" "kafka_ssl_cert_file" "kafka_ssl_key_file" "fcm_credentials_file" "apns_key_file" "apns_key_id" "apns_team_id" "apns_topic" "apns_ca_file" "http_host" "http_port" "shutdown_grace_seconds" }}
{{- range $key, $_ := .Values.config }}
{{- if has $key $managed }}
{{- fail (printf "config.%s is set by the chart from its own values (see values.yaml); remove it from config" $key) }}
{{- end }}
{{- end }}
{{- end }}
