{{/*
The pieces of a pod with sluice in front of its app, as named templates. The chart's own
Deployment is made of them, and a parent chart with its own Deployment includes the same ones in
its pod spec (README, "Using sluice from your own chart"; examples/parent-chart). Each takes the
sluice chart's context: in this chart `.`, in a parent chart the one "sluice.lib.context" makes.

  sluice.podAnnotations      the config checksum (and the prometheus.io/* annotations)
  sluice.initContainers      list items: sluice-tools (copies sluice-drain for the app's hooks),
                             then sluice itself as a native sidecar (sluice.native: true)
  sluice.sidecarContainers   list items for containers: sluice when sluice.native is false
  sluice.appLifecycle        the app container's lifecycle: preStop drains, postStart resumes
  sluice.appVolumeMounts     list items for the app container: sluice-drain's folder
  sluice.volumes             list items: the ConfigMap, the admin token, sluice-drain's folder
  sluice.terminationGracePeriodSeconds   drain delay + budget + terminationGraceMargin
  sluice.configMap           the ConfigMap manifest with sluice.yaml
*/}}

{{- define "sluice.podAnnotations" -}}
# A changed sluice.yaml rolls the pods (sluice re-reads its file only on SIGHUP).
checksum/config: {{ include "sluice.config" . | sha256sum }}
{{- if include "sluice.scrapeAnnotations" . }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ int .Values.sluice.ports.admin | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{/* Non-empty when the pods carry prometheus.io/* annotations: metrics.podAnnotations true, or
"auto" (the default) when no ServiceMonitor is made, so that nothing is scraped twice. */}}
{{- define "sluice.scrapeAnnotations" -}}
{{- $a := .Values.metrics.podAnnotations -}}
{{- if eq (toString $a) "auto" -}}
{{- if not (include "sluice.serviceMonitor" .) }}true{{ end -}}
{{- else if $a -}}
true
{{- end -}}
{{- end -}}

{{/* Non-empty when the chart makes a ServiceMonitor. */}}
{{- define "sluice.serviceMonitor" -}}
{{- if and .Values.standalone .Values.metrics.serviceMonitor.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}true{{ end -}}
{{- end -}}

{{/*
The sluice chart's context for a parent chart's templates, which cannot see this chart's .Chart:
fills the dict it is given from its "parent" (the parent's top-level context) and "values" (the
parent's values for this dependency: .Values.sluice, or the alias's key).

  {{- $sluice := dict "parent" . "values" .Values.sluice }}
  {{- include "sluice.lib.context" $sluice }}
  ...
  initContainers:
    {{- include "sluice.initContainers" $sluice | nindent 8 }}
*/}}
{{- define "sluice.lib.context" -}}
{{- $_ := set . "Values" .values -}}
{{- $_ = set . "Release" .parent.Release -}}
{{- $_ = set . "Capabilities" .parent.Capabilities -}}
{{- $_ = set . "Chart" (dict "Name" "sluice" "Version" "0.1.0" "AppVersion" "0.1.0") -}}
{{- if .Values.standalone -}}
{{- fail "the sluice dependency renders its own Deployment and Service: set standalone: false in its values when your chart's pod includes sluice's templates" -}}
{{- end -}}
{{- include "sluice.checks" . -}}
{{- end -}}

{{- define "sluice.toolsContainer" -}}
name: sluice-tools
# Copies the static sluice-drain client where the app's lifecycle hooks run it (any app image).
image: {{ include "sluice.image" . | quote }}
imagePullPolicy: {{ .Values.sluice.image.pullPolicy }}
command: ["cp", "/usr/local/bin/sluice-drain", "/sluice-bin/sluice-drain"]
resources:
  requests:
    cpu: 10m
    memory: 16Mi
  limits:
    memory: 16Mi
securityContext:
  {{- toYaml .Values.sluice.securityContext | nindent 2 }}
volumeMounts:
  - name: sluice-bin
    mountPath: /sluice-bin
{{- end -}}

{{- define "sluice.initContainers" -}}
- {{ include "sluice.toolsContainer" . | nindent 2 | trim }}
{{- if .Values.sluice.native }}
- {{ include "sluice.container" . | nindent 2 | trim }}
{{- end }}
{{- end -}}

{{- define "sluice.sidecarContainers" -}}
{{- if not .Values.sluice.native -}}
- {{ include "sluice.container" . | nindent 2 | trim }}
{{- end -}}
{{- end -}}

{{- define "sluice.appLifecycle" -}}
# The kubelet runs preStop before every stop of the app, liveness and startup-probe kills
# included: the app's SIGTERM comes only once sluice has drained in front of it. postStart runs
# on every start, restarts included: sluice serves again after a drain that no pod deletion
# followed. Both reach the admin API over the pod's loopback, where no token is needed, and
# report failures in the hook's exit status (an httpGet hook would count a 403 as success).
preStop:
  exec:
    command: ["/sluice-bin/sluice-drain", "--admin", {{ include "sluice.hookAdminAddress" . | quote }}, "--wait"]
postStart:
  exec:
    command: ["/sluice-bin/sluice-drain", "--admin", {{ include "sluice.hookAdminAddress" . | quote }}, "--resume"]
{{- end -}}

{{- define "sluice.appVolumeMounts" -}}
- name: sluice-bin
  mountPath: /sluice-bin
  readOnly: true
{{- end -}}

{{- define "sluice.volumes" -}}
- name: sluice-config
  configMap:
    name: {{ include "sluice.fullname" . }}-config
- name: sluice-admin-token
  secret:
    secretName: {{ include "sluice.adminSecretName" . }}
    items:
      - key: {{ include "sluice.adminSecretKey" . }}
        path: {{ include "sluice.adminSecretKey" . }}
- name: sluice-bin
  emptyDir:
    sizeLimit: 16Mi
{{- end -}}

{{- define "sluice.configMap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "sluice.fullname" . }}-config
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "sluice.labels" . | nindent 4 }}
data:
  sluice.yaml: |
    {{- include "sluice.config" . | nindent 4 }}
{{- end -}}
