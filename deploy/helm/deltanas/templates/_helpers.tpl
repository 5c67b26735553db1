{{/* Names: <release>-deltanas (or the release name when it already says deltanas), then -<component>. */}}
{{- define "deltanas.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "deltanas.name" -}}
{{- printf "%s-%s" (include "deltanas.fullname" .root) .component -}}
{{- end -}}

{{- define "deltanas.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "deltanas.labels" -}}
{{ include "deltanas.selectorLabels" . }}
app.kubernetes.io/part-of: deltanas
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "deltanas.image" -}}
{{- printf "%s%s:%s" .root.Values.image.registry .image (.root.Values.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}

{{/* A Secret value that survives upgrades: the stored one, else `given`, else a random one. */}}
{{- define "deltanas.keptSecret" -}}
{{- $stored := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- $old := dig "data" .key "" ($stored | default dict) -}}
{{- if .given -}}{{ .given | b64enc }}{{- else if $old -}}{{ $old }}{{- else -}}{{ randAlphaNum 32 | b64enc }}{{- end -}}
{{- end -}}

{{- define "deltanas.authSecret" -}}
{{- .Values.auth.existingSecret | default (printf "%s-auth" (include "deltanas.fullname" .)) -}}
{{- end -}}

{{- define "deltanas.tlsSecret" -}}
{{- .Values.tls.existingSecret | default (printf "%s-tls" (include "deltanas.fullname" .)) -}}
{{- end -}}

{{- define "deltanas.trackingUri" -}}
{{- .Values.tracking.externalUri | default (printf "http://%s:%v" (include "deltanas.name" (dict "root" . "component" "mlflow")) .Values.tracking.mlflow.port) -}}
{{- end -}}

{{/* Env of a gRPC service: bind all interfaces on its port, token and TLS from their Secrets, then its `env`. */}}
{{- define "deltanas.serviceEnv" -}}
{{- $prefix := printf "DELTANAS_%s_" (upper .component) -}}
- name: DELTANAS_SERVICE
  value: {{ .component }}
- name: {{ $prefix }}HOST
  value: "0.0.0.0"
- name: {{ $prefix }}PORT
  value: {{ .values.port | quote }}
{{- if .root.Values.auth.enabled }}
- name: {{ $prefix }}AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "deltanas.authSecret" .root }}
      key: token
{{- end }}
{{- if .root.Values.tls.enabled }}
- name: {{ $prefix }}TLS_CERT
  value: /etc/deltanas/tls/tls.crt
- name: {{ $prefix }}TLS_KEY
  value: /etc/deltanas/tls/tls.key
{{- if .root.Values.tls.mutual }}
- name: {{ $prefix }}TLS_CLIENT_CA
  value: /etc/deltanas/tls/ca.crt
{{- end }}
{{- end }}
{{- range $name, $value := .values.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* Probes of a gRPC service: readiness is native gRPC health (SERVING); startup and liveness are too, unless
`liveness` is "tcp" (a service whose health follows a server it depends on: not ready, but not restarted, while
that server is down). All TCP under TLS, which the kubelet's gRPC probe cannot speak. */}}
{{- define "deltanas.probes" -}}
{{- $tcp := dict "tcpSocket" (dict "port" "grpc") -}}
{{- $check := ternary $tcp (dict "grpc" (dict "port" (int .values.port))) .root.Values.tls.enabled -}}
{{- $live := ternary $tcp $check (eq .liveness "tcp") -}}
startupProbe:
  {{- toYaml $live | nindent 2 }}
  periodSeconds: 10
  failureThreshold: 30
readinessProbe:
  {{- toYaml $check | nindent 2 }}
  periodSeconds: 10
  timeoutSeconds: 5
livenessProbe:
  {{- toYaml $live | nindent 2 }}
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}

{{- define "deltanas.tlsVolume" -}}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ include "deltanas.tlsSecret" . }}
{{- end }}
{{- end -}}

{{- define "deltanas.tlsMount" -}}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/deltanas/tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "deltanas.containerSecurity" -}}
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
{{- end -}}

{{/* An appArmorProfile ({type, localhostProfile}) as the pre-1.30 annotation's value. */}}
{{- define "deltanas.appArmorAnnotation" -}}
{{- if eq .type "Localhost" -}}
localhost/{{ required "appArmorProfile.localhostProfile is required for type Localhost" .localhostProfile }}
{{- else if eq .type "RuntimeDefault" -}}
runtime/default
{{- else if eq .type "Unconfined" -}}
unconfined
{{- else -}}
{{- fail (printf "appArmorProfile.type %q: one of Unconfined, RuntimeDefault, Localhost" (toString .type)) -}}
{{- end -}}
{{- end -}}

{{- define "deltanas.gpuResources" -}}
{{- $res := deepCopy (.resources | default dict) -}}
{{- if .gpus -}}
{{- $limits := merge (dict "nvidia.com/gpu" .gpus) ($res.limits | default dict) -}}
{{- $_ := set $res "limits" $limits -}}
{{- end -}}
{{- toYaml $res -}}
{{- end -}}

{{- define "deltanas.curatorClaim" -}}
{{- .Values.curator.persistence.existingClaim | default (printf "%s-state" (include "deltanas.name" (dict "root" . "component" "curator"))) -}}
{{- end -}}

{{/* The pod spec parts every deltanas service shares. */}}
{{- define "deltanas.podCommon" -}}
securityContext:
  {{- toYaml (merge (deepCopy (.values.podSecurityContext | default dict)) .root.Values.podSecurityContext) | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The Service of a gRPC component; headless: one DNS record per ready pod, which `dns:///` resolves. */}}
{{- define "deltanas.grpcService" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "deltanas.name" . }}{{ .suffix }}
  labels:
    {{- include "deltanas.labels" . | nindent 4 }}
spec:
  {{- if .headless }}
  clusterIP: None
  {{- end }}
  selector:
    {{- include "deltanas.selectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ .values.port }}
      targetPort: grpc
      appProtocol: grpc
{{- end -}}

{{- define "deltanas.dataClaim" -}}
{{- .Values.data.existingClaim | default (printf "%s-data" (include "deltanas.fullname" .)) -}}
{{- end -}}
