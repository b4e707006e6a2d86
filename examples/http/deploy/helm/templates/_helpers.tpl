{{/* Names and labels shared by the templates. */}}
{{- define "marketgate-http.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "marketgate-http.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "marketgate-http.selectorLabels" -}}
app.kubernetes.io/name: {{ include "marketgate-http.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "marketgate-http.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "marketgate-http.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "marketgate-http.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "marketgate-http.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false: an existing ServiceAccount with the IRSA annotation" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The product code, required: the binary runs as exactly one product. */}}
{{- define "marketgate-http.productCode" -}}
{{- required "productCode is required: the AWS Marketplace product code this deployment runs as (e.g. --set productCode=mgsim-usage-custom)" .Values.productCode }}
{{- end }}
