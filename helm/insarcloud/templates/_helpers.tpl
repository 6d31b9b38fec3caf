{{/* Names ------------------------------------------------------------------------------------------ */}}

{{- define "insarcloud.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped base name; kept <= 40 characters so that "<fullname>-dask-scheduler" and KubeRay's
"<fullname>-ray-head-svc" stay valid DNS labels (63). */}}
{{- define "insarcloud.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "insarcloud.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "insarcloud.labels" -}}
helm.sh/chart: {{ include "insarcloud.chart" . }}
{{ include "insarcloud.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: insarcloud
{{- end }}

{{- define "insarcloud.selectorLabels" -}}
app.kubernetes.io/name: {{ include "insarcloud.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "insarcloud.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "insarcloud.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Engines: names and the addresses the driver gets --------------------------------------------- */}}

{{/* The DaskCluster is named "<fullname>-dask"; the operator calls its scheduler Service
"<cluster>-scheduler". The chart's own Deployments use the same Service name, so the address does not
depend on the mode. */}}
{{- define "insarcloud.daskName" -}}
{{- printf "%s-dask" (include "insarcloud.fullname" .) }}
{{- end }}

{{- define "insarcloud.daskSchedulerService" -}}
{{- printf "%s-scheduler" (include "insarcloud.daskName" .) }}
{{- end }}

{{- define "insarcloud.daskSchedulerAddress" -}}
{{- printf "tcp://%s:8786" (include "insarcloud.daskSchedulerService" .) }}
{{- end }}

{{/* The stand-alone RayCluster (job.enabled=false) is "<fullname>-ray"; KubeRay calls its head Service
"<cluster>-head-svc". A RayJob names its own cluster (with a random suffix): its driver runs on that
cluster's head and reaches Ray as "auto", so no address is needed at render time. */}}
{{- define "insarcloud.rayName" -}}
{{- printf "%s-ray" (include "insarcloud.fullname" .) }}
{{- end }}

{{- define "insarcloud.rayHeadService" -}}
{{- printf "%s-head-svc" (include "insarcloud.rayName" .) }}
{{- end }}

{{/* The area job: a RayJob when the release runs Ray (its entrypoint runs on the RayJob's head), a plain
batch Job otherwise. Both run the same command. */}}
{{- define "insarcloud.jobName" -}}
{{- printf "%s-area-%d" (include "insarcloud.fullname" .) (int .Release.Revision) }}
{{- end }}

{{/* "true" when the job deletes the release's Dask cluster at its end (dask.lifecycle=job). */}}
{{- define "insarcloud.daskCleanup" -}}
{{- and .Values.job.enabled .Values.dask.enabled (eq .Values.dask.lifecycle "job") .Values.rbac.create | toString }}
{{- end }}

{{/* Objects the job deletes at its end: the DaskCluster (its pods and Service go with it) or the chart's
own scheduler/worker Deployments and Service. Paths are group/version/plural/name ("core" = /api/v1). */}}
{{- define "insarcloud.daskDeletePaths" -}}
{{- $n := include "insarcloud.daskName" . }}
{{- if eq .Values.dask.mode "operator" }}
{{- $paths := list (printf "kubernetes.dask.org/v1/daskclusters/%s" $n) }}
{{- if .Values.dask.autoscaler.enabled }}
{{- $paths = append $paths (printf "kubernetes.dask.org/v1/daskautoscalers/%s" $n) }}
{{- end }}
{{- toJson $paths }}
{{- else }}
{{- toJson (list (printf "apps/v1/deployments/%s-scheduler" $n) (printf "apps/v1/deployments/%s-worker" $n) (printf "core/v1/services/%s-scheduler" $n)) }}
{{- end }}
{{- end }}

{{/* The driver's command line (a list): wait for the Dask scheduler, run the area job, then (lifecycle=job)
delete the Dask cluster. deploy/run_area_job.py documents it. */}}
{{- define "insarcloud.driverCommand" -}}
{{- $cmd := list "python" "/opt/insarcloud/run_area_job.py" }}
{{- if .Values.dask.enabled }}
{{- if .Values.job.waitForClusters.enabled }}
{{- $cmd = concat $cmd (list "--wait" (printf "%s:8786" (include "insarcloud.daskSchedulerService" .)) "--wait-timeout" (toString .Values.job.waitForClusters.timeoutSeconds)) }}
{{- end }}
{{- if eq (include "insarcloud.daskCleanup" .) "true" }}
{{- range (include "insarcloud.daskDeletePaths" . | fromJsonArray) }}
{{- $cmd = concat $cmd (list "--delete" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson (concat $cmd (list "--" "insarcloud" "run" "/config/area.yaml")) }}
{{- end }}

{{/* Environment of the driver container (besides storage). The log level goes to every insarcloud process;
nothing here asks for a TTY: progress is printed as plain lines that `kubectl logs -f` follows. */}}
{{- define "insarcloud.driverEnv" -}}
- name: INSARCLOUD_LOG_LEVEL
  value: {{ .Values.job.logLevel | quote }}
{{- if .Values.dask.enabled }}
- name: INSARCLOUD_DASK_SCHEDULER
  value: {{ include "insarcloud.daskSchedulerAddress" . | quote }}
{{- end }}
{{- if .Values.ray.enabled }}
# the driver runs on the RayJob's head: "auto" is that cluster (no Ray Client, no ray:// address)
- name: INSARCLOUD_RAY_ADDRESS
  value: auto
{{- end }}
{{- end }}

{{/* Images ----------------------------------------------------------------------------------------- */}}

{{- define "insarcloud.imageRef" -}}
{{- $img := index . 0 }}{{- $root := index . 1 }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{- define "insarcloud.cpuImage" -}}
{{- include "insarcloud.imageRef" (list .Values.image.cpu .) }}
{{- end }}

{{- define "insarcloud.gpuImage" -}}
{{- include "insarcloud.imageRef" (list .Values.image.gpu .) }}
{{- end }}

{{/* Storage environment shared by every pod that touches the bucket. Credentials only ever appear as
secretKeyRef names; their values stay in the Secret. */}}
{{- define "insarcloud.storageEnv" -}}
- name: AWS_DEFAULT_REGION
  value: {{ .Values.storage.region | quote }}
{{- if .Values.storage.endpointUrl }}
- name: AWS_ENDPOINT_URL
  value: {{ .Values.storage.endpointUrl | quote }}
{{- end }}
{{- with .Values.storage.credentials }}
{{- if eq .mode "secret" }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ required "storage.credentials.existingSecret is required when mode=secret" .existingSecret | quote }}
      key: {{ .accessKeyIdKey | quote }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret | quote }}
      key: {{ .secretAccessKeyKey | quote }}
{{- if .sessionTokenKey }}
- name: AWS_SESSION_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret | quote }}
      key: {{ .sessionTokenKey | quote }}
{{- end }}
{{- end }}
{{- end }}
- name: HOME
  value: /tmp
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
{{- end }}

{{/* Writable scratch: the root filesystem is read-only. */}}
{{- define "insarcloud.scratchVolume" -}}
- name: scratch
  emptyDir:
    sizeLimit: {{ .Values.scratchSizeLimit }}
{{- end }}

{{- define "insarcloud.scratchMount" -}}
- name: scratch
  mountPath: /tmp
{{- end }}

{{- define "insarcloud.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "insarcloud.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{- define "insarcloud.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
