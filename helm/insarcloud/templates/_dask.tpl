{{/* Pod specs shared by the operator's DaskCluster and the chart's own Deployments. */}}

{{- define "insarcloud.dask.schedulerPodSpec" -}}
serviceAccountName: {{ include "insarcloud.serviceAccountName" . }}
automountServiceAccountToken: false
{{- include "insarcloud.imagePullSecrets" . }}
securityContext:
  {{- include "insarcloud.podSecurityContext" . | nindent 2 }}
{{- with .Values.dask.scheduler.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.dask.scheduler.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: scheduler
    image: {{ include "insarcloud.cpuImage" . }}
    imagePullPolicy: {{ .Values.image.cpu.pullPolicy }}
    args: ["dask", "scheduler", "--host", "0.0.0.0", "--port", "8786", "--dashboard-address", ":8787"]
    ports:
      - name: tcp-comm
        containerPort: 8786
        protocol: TCP
      - name: http-dashboard
        containerPort: 8787
        protocol: TCP
    env:
      {{- include "insarcloud.storageEnv" . | nindent 6 }}
    readinessProbe:
      httpGet:
        port: http-dashboard
        path: /health
      initialDelaySeconds: 5
      periodSeconds: 10
    livenessProbe:
      httpGet:
        port: http-dashboard
        path: /health
      initialDelaySeconds: 15
      periodSeconds: 20
    resources:
      {{- toYaml .Values.dask.scheduler.resources | nindent 6 }}
    securityContext:
      {{- include "insarcloud.containerSecurityContext" . | nindent 6 }}
    volumeMounts:
      {{- include "insarcloud.scratchMount" . | nindent 6 }}
volumes:
  {{- include "insarcloud.scratchVolume" . | nindent 2 }}
{{- end }}

{{/* schedulerArg: "" in operator mode (the operator sets DASK_SCHEDULER_ADDRESS, which `dask worker`
reads), the Service address in deployments mode. */}}
{{- define "insarcloud.dask.workerPodSpec" -}}
{{- $root := index . 0 }}{{- $operator := index . 1 }}
{{- with $root }}
serviceAccountName: {{ include "insarcloud.serviceAccountName" . }}
automountServiceAccountToken: false
{{- include "insarcloud.imagePullSecrets" . }}
securityContext:
  {{- include "insarcloud.podSecurityContext" . | nindent 2 }}
{{- with .Values.dask.worker.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.dask.worker.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: worker
    image: {{ include "insarcloud.cpuImage" . }}
    imagePullPolicy: {{ .Values.image.cpu.pullPolicy }}
    args:
      - dask
      - worker
      {{- if not $operator }}
      - {{ include "insarcloud.daskSchedulerAddress" . }}
      {{- end }}
      - --name
      - {{ if $operator }}$(DASK_WORKER_NAME){{ else }}$(POD_NAME){{ end }}
      - --nthreads
      - {{ .Values.dask.worker.nthreads | quote }}
      # the worker's budget is the container's limit, stated (not "auto", which reads the cgroup and falls back
      # to the node's memory when there is no limit): Dask's spill/pause/restart thresholds are fractions of it
      - --memory-limit
      - {{ dig "limits" "memory" "auto" .Values.dask.worker.resources | quote }}
      - --local-directory
      - /tmp/dask-worker-space
      - --dashboard
      - --dashboard-address
      - ":8788"
    ports:
      - name: http-dashboard
        containerPort: 8788
        protocol: TCP
    env:
      {{- if not $operator }}
      - name: POD_NAME
        valueFrom:
          fieldRef:
            fieldPath: metadata.name
      {{- end }}
      {{- with .Values.dask.worker.mallocThreshold }}
      # read by glibc when a process starts; the nanny passes them on to the worker process it spawns (a variable
      # in its environment wins over Dask's own pre-spawn MALLOC_TRIM_THRESHOLD_)
      - name: MALLOC_TRIM_THRESHOLD_
        value: {{ . | int64 | quote }}
      - name: MALLOC_MMAP_THRESHOLD_
        value: {{ . | int64 | quote }}
      {{- end }}
      {{- include "insarcloud.storageEnv" . | nindent 6 }}
    readinessProbe:
      httpGet:
        port: http-dashboard
        path: /health
      initialDelaySeconds: 5
      periodSeconds: 10
    livenessProbe:
      httpGet:
        port: http-dashboard
        path: /health
      initialDelaySeconds: 15
      periodSeconds: 20
    resources:
      {{- toYaml .Values.dask.worker.resources | nindent 6 }}
    securityContext:
      {{- include "insarcloud.containerSecurityContext" . | nindent 6 }}
    volumeMounts:
      {{- include "insarcloud.scratchMount" . | nindent 6 }}
volumes:
  {{- include "insarcloud.scratchVolume" . | nindent 2 }}
{{- end }}
{{- end }}
