{{- define "switchyard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "switchyard.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "switchyard.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Where the ConfigMap is mounted, and the file `switchyard serve --config` reads. */}}
{{- define "switchyard.configDir" -}}/etc/switchyard{{- end -}}
{{- define "switchyard.configFile" -}}{{ include "switchyard.configDir" . }}/switchyard.yaml{{- end -}}

{{/* The config file: the user's `config` with what the chart owns set over it. */}}
{{- define "switchyard.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $server := default dict $config.server -}}
{{- $_ := set $server "host" "0.0.0.0" -}}
{{- $_ := set $server "port" (int .Values.port) -}}
{{- $_ := set $server "master_key" "env:SWITCHYARD_MASTER_KEY" -}}
{{- $_ := set $server "data_dir" "/data" -}}
{{- $_ := set $config "server" $server -}}
{{- $state := default dict $config.state -}}
{{- $_ := set $state "database" "env:SWITCHYARD_DATABASE_URL" -}}
{{- $_ := set $config "state" $state -}}
{{- toYaml $config -}}
{{- end -}}
