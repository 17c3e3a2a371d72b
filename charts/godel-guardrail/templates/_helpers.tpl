{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "godel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart unless the release name already contains the chart name. */}}
{{- define "godel.fullname" -}}
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

{{- define "godel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "godel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "godel.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "godel.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: ext-proc
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "godel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "godel.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "godel.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where secret files appear in the container, per secrets.provider. */}}
{{- define "godel.secretsDir" -}}
{{- if eq .Values.secrets.provider "vaultAgent" }}/vault/secrets{{ else if eq .Values.secrets.provider "csi" }}/mnt/secrets-store{{ end }}
{{- end }}

{{/*
Godel's config file: the user's `config` with the server section the chart owns (addresses from
ports and bindAddress, shutdown timings from lifecycle) merged over it.
*/}}
{{- define "godel.config" -}}
{{- $server := dict
  "grpc_address" (printf "%s:%d" (include "godel.hostForAddress" .) (int .Values.ports.grpc))
  "admin_address" (printf "%s:%d" (include "godel.hostForAddress" .) (int .Values.ports.admin))
  "drain_seconds" .Values.lifecycle.drainSeconds
  "shutdown_delay_seconds" .Values.lifecycle.shutdownDelaySeconds
-}}
{{- $config := deepCopy (default (dict) .Values.config) -}}
{{- $userServer := default (dict) (get $config "server") -}}
{{- $_ := set $config "server" (merge $server (deepCopy $userServer)) -}}
{{- toYaml $config }}
{{- end }}

{{- define "godel.hostForAddress" -}}
{{- if contains ":" .Values.bindAddress }}[{{ .Values.bindAddress }}]{{ else }}{{ .Values.bindAddress }}{{ end }}
{{- end }}

{{/* Checks the schema cannot express; a failed one stops rendering with the reason. */}}
{{- define "godel.validate" -}}
{{- $l := .Values.lifecycle -}}
{{- $need := addf $l.preStopSleepSeconds $l.shutdownDelaySeconds $l.drainSeconds 2 -}}
{{- if gt $need (float64 $l.terminationGracePeriodSeconds) -}}
{{- fail (printf "lifecycle: preStopSleepSeconds + shutdownDelaySeconds + drainSeconds + 2s (%v) exceeds terminationGracePeriodSeconds (%v); Godel would be killed mid-drain" $need $l.terminationGracePeriodSeconds) -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (not (dig "requests" "cpu" "" .Values.resources)) -}}
{{- fail "autoscaling.enabled needs resources.requests.cpu: the HPA measures CPU utilisation against the request" -}}
{{- end -}}
{{- if and (eq .Values.secrets.provider "csi") (not .Values.secrets.csi.secretProviderClass) -}}
{{- fail "secrets.provider csi needs secrets.csi.secretProviderClass (the name to mount or create)" -}}
{{- end -}}
{{- $dir := include "godel.secretsDir" . -}}
{{- $keys := dig "keys" (dict) (default (dict) .Values.config) -}}
{{- range $name := list "redaction" "pseudonym" "audit" "audit_kek" "audit_signing" "redis_password" "admin_token" -}}
{{- $ref := dig $name "" $keys -}}
{{- if and $ref (hasPrefix "file:" $ref) -}}
{{- $path := trimPrefix "file:" $ref -}}
{{- if not (and $dir (hasPrefix (printf "%s/" $dir) $path)) -}}
{{- fail (printf "config.keys.%s names the secret file %s, but secrets.provider %s mounts secrets at %s" $name $path $.Values.secrets.provider (default "nothing" $dir)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end }}
