{{/* Names and labels. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.fullname" -}}
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

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "sluice.image" -}}
{{- printf "%s:%s" .Values.sluice.image.repository (.Values.sluice.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The app's image; with no repository, sluice's own image (it runs the demo app). */}}
{{- define "sluice.appImage" -}}
{{- if .Values.app.image.repository -}}
{{- printf "%s:%s" .Values.app.image.repository (required "app.image.tag is required with app.image.repository" .Values.app.image.tag) -}}
{{- else -}}
{{- include "sluice.image" . -}}
{{- end -}}
{{- end -}}

{{/*
A sluice duration ("250ms", "5s", "1m", "1h") as whole seconds, rounded up. The schema already
rejects anything else; the fail is for a chart that skips it.
*/}}
{{- define "sluice.seconds" -}}
{{- $d := toString . -}}
{{- $digits := regexFind "^[0-9]+" $d -}}
{{- $unit := trimPrefix $digits $d -}}
{{- $n := atoi $digits -}}
{{- if not $digits -}}
{{- fail (printf "%q is not a duration (a whole number with a unit: 250ms, 2s, 1m, 1h)" $d) -}}
{{- else if eq $unit "ms" -}}
{{- div (add $n 999) 1000 -}}
{{- else if eq $unit "s" -}}
{{- $n -}}
{{- else if eq $unit "m" -}}
{{- mul $n 60 -}}
{{- else if eq $unit "h" -}}
{{- mul $n 3600 -}}
{{- else -}}
{{- fail (printf "%q is not a duration (a whole number with a unit: 250ms, 2s, 1m, 1h)" $d) -}}
{{- end -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds: the drain's delay and budget (the app's preStop hook waits for
the drain) plus the margin for the app's own exit after its SIGTERM.
*/}}
{{- define "sluice.terminationGracePeriodSeconds" -}}
{{- $d := .Values.sluice.drain -}}
{{- add (include "sluice.seconds" $d.delay | atoi) (include "sluice.seconds" $d.budget | atoi) (include "sluice.seconds" .Values.terminationGraceMargin | atoi) -}}
{{- end -}}

{{- define "sluice.adminSecretName" -}}
{{- .Values.sluice.adminToken.existingSecret | default (printf "%s-admin-token" (include "sluice.fullname" .)) -}}
{{- end -}}

{{- define "sluice.adminSecretKey" -}}
{{- if .Values.sluice.adminToken.existingSecret -}}
{{- .Values.sluice.adminToken.existingSecretKey -}}
{{- else -}}
token
{{- end -}}
{{- end -}}

{{/*
The admin token of the chart's own Secret (with no sluice.adminToken.existingSecret): from
sluice.adminToken.value; or read back from that Secret so that upgrades keep it, or generated on
the first install. No pod spec carries it: the app's lifecycle hooks reach the admin API over the
pod's loopback, where no token is needed. It is for callers off the pod (/drain, /reload).
*/}}
{{- define "sluice.adminToken" -}}
{{- $cfg := .Values.sluice.adminToken -}}
{{- $token := "" -}}
{{- if $cfg.value -}}
{{- $token = $cfg.value -}}
{{- else -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "sluice.adminSecretName" .) -}}
{{- $encoded := dig "data" "token" "" $secret -}}
{{- $token = ternary ($encoded | b64dec) (randAlphaNum 40) (ne $encoded "") -}}
{{- end -}}
{{- if not (regexMatch "^[!-~]{16,}$" $token) -}}
{{- fail "the admin token must be 16 or more visible ASCII characters, without spaces (it goes into an HTTP header)" -}}
{{- end -}}
{{- $token -}}
{{- end -}}

{{/*
Where sluice's listeners bind (sluice.bindAddress: "0.0.0.0", or "[::]" on IPv6-only clusters),
and the loopback address of the same family that the app's lifecycle hooks use for the admin API.
*/}}
{{- define "sluice.bindHost" -}}
{{- .Values.sluice.bindAddress | default "0.0.0.0" -}}
{{- end -}}

{{- define "sluice.hookAdminAddress" -}}
{{- if contains ":" (include "sluice.bindHost" .) -}}
[::1]:{{ int .Values.sluice.ports.admin }}
{{- else -}}
127.0.0.1:{{ int .Values.sluice.ports.admin }}
{{- end -}}
{{- end -}}

{{- define "sluice.checks" -}}
{{- $ports := list (int .Values.sluice.ports.http) (int .Values.sluice.ports.admin) -}}
{{- if .Values.egress.apis -}}
{{- $ports = append $ports (int .Values.egress.port) -}}
{{- end -}}
{{- if ne (len $ports) (len (uniq $ports)) -}}
{{- fail (printf "sluice.ports.http, sluice.ports.admin and egress.port must differ (%v)" $ports) -}}
{{- end -}}
{{- if has (int .Values.app.port) $ports -}}
{{- fail (printf "app.port %d is one of sluice's ports (%v): the app and sluice share the pod's network" (int .Values.app.port) $ports) -}}
{{- end -}}
{{- $names := list -}}
{{- range .Values.egress.apis -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- if ne (len $names) (len (uniq $names)) -}}
{{- fail (printf "egress.apis: two APIs have the same name (%v)" $names) -}}
{{- end -}}
{{- if and .Values.sluice.native (semverCompare "<1.29.0-0" .Capabilities.KubeVersion.Version) -}}
{{- fail (printf "sluice.native=true needs Kubernetes 1.29 or later (native sidecars), this is %s: set sluice.native=false (or, with helm template, pass --kube-version)" .Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- end -}}

{{/*
sluice.yaml, rendered from the values: the shape of config/sidecar.yaml. Every sluice key the
values carry goes through as it is; the listeners, the app cluster's endpoint and readiness, the
admin listener and the token file are the chart's.
*/}}
{{- define "sluice.config" -}}
# Rendered by the sluice chart (release {{ .Release.Name }}) from its values.
# Every key: README, "Configuration"; commented example: config/sidecar.yaml.
admin:
  # Every address: the kubelet's probes come to the pod IP. The app's lifecycle hooks come over
  # loopback (no token needed); the token is for other callers off the pod.
  address: "{{ include "sluice.bindHost" . }}:{{ int .Values.sluice.ports.admin }}"
  token_file: /etc/sluice/admin/{{ include "sluice.adminSecretKey" . }}
workers: {{ int .Values.sluice.workers }}
listeners:
  - name: ingress
    address: "{{ include "sluice.bindHost" . }}:{{ int .Values.sluice.ports.http }}"
    cluster: app
{{- if .Values.egress.apis }}
  # The app's outbound calls: loopback only, open until sluice stops.
  - name: egress
    address: 127.0.0.1:{{ int .Values.egress.port }}
    drain: false
    routes:
{{- range .Values.egress.apis }}
{{- $api := . }}
{{- range .hosts }}
      - {host: {{ toJson . }}, cluster: {{ toJson $api.name }}}
{{- end }}
{{- end }}
{{- end }}
clusters:
  - name: app
    endpoints: ["127.0.0.1:{{ int .Values.app.port }}"]
    readiness: true
    {{- with .Values.sluice.upstream }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- range .Values.egress.apis }}
  - name: {{ toJson .name }}
    {{- toYaml (omit . "name" "hosts") | nindent 4 }}
{{- end }}
{{- with .Values.sluice.limits }}
limits:
  {{- toYaml . | nindent 2 }}
{{- end }}
drain:
  {{- toYaml .Values.sluice.drain | nindent 2 }}
  {{- if not .Values.sluice.native }}
  # A plain container gets its SIGTERM with the app's: egress serves until the app has gone.
  wait_for_app: true
  {{- end }}
{{- with .Values.sluice.log }}
log:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The sluice container: in initContainers (native sidecar) or in containers. */}}
{{- define "sluice.container" -}}
name: sluice
image: {{ include "sluice.image" . | quote }}
imagePullPolicy: {{ .Values.sluice.image.pullPolicy }}
{{- if .Values.sluice.native }}
# A native sidecar: started (and its startup probe passed) before the app, stopped after it.
restartPolicy: Always
{{- end }}
args: ["--config", "/etc/sluice/config/sluice.yaml"]
{{- with .Values.sluice.env }}
env:
  {{- toYaml . | nindent 2 }}
{{- end }}
ports:
  - name: http
    containerPort: {{ int .Values.sluice.ports.http }}
    protocol: TCP
  - name: admin
    containerPort: {{ int .Values.sluice.ports.admin }}
    protocol: TCP
# /healthz, not /readyz: /readyz waits for the app, and a native sidecar's startup probe must
# pass before the app is even started.
startupProbe:
  httpGet:
    path: /healthz
    port: {{ int .Values.sluice.ports.admin }}
  periodSeconds: 1
  failureThreshold: 30
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ int .Values.sluice.ports.admin }}
  periodSeconds: 2
  failureThreshold: 2
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ int .Values.sluice.ports.admin }}
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
{{- with .Values.sluice.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.sluice.securityContext | nindent 2 }}
volumeMounts:
  - name: sluice-config
    mountPath: /etc/sluice/config
    readOnly: true
  - name: sluice-admin-token
    mountPath: /etc/sluice/admin
    readOnly: true
{{- with .Values.sluice.volumeMounts }}
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
