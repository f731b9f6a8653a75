{{/* The operator's name, as the kustomize manifests name it (one operator per cluster). */}}
{{- define "edgetenant.name" -}}edgetenant-operator{{- end }}

{{/* Cluster-scoped objects carry the release's namespace, so two releases in two namespaces do not collide. */}}
{{- define "edgetenant.clusterName" -}}
{{- if eq .Release.Namespace "edgetenant-system" -}}edgetenant-operator{{- else -}}edgetenant-operator-{{ .Release.Namespace }}{{- end -}}
{{- end }}

{{- define "edgetenant.selectorLabels" -}}
app.kubernetes.io/name: edgetenant-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "edgetenant.labels" -}}
{{ include "edgetenant.selectorLabels" . }}
app.kubernetes.io/part-of: edgetenant
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "edgetenant.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
