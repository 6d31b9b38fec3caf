{{/* The Ray cluster spec, shared by the RayJob (rayClusterSpec; the default) and the stand-alone RayCluster
rendered when job.enabled=false. Follows KubeRay's conventions: head with num-cpus 0 (no tasks on the head,
which also hosts the job's driver), /dev/shm as a memory-backed emptyDir on every Ray pod (the object store
lives there; a container's default 64 MiB would push it to disk), token authentication (authOptions), the
GPU group scaled from zero by KubeRay's in-tree autoscaler. */}}

{{- define "insarcloud.ray.shm" -}}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.ray.shmSizeLimit }}
{{- end }}

{{- define "insarcloud.ray.clusterSpec" -}}
{{- $driver := index . 1 }}{{- $root := index . 0 }}
{{- with $root }}
rayVersion: {{ .Values.ray.rayVersion | quote }}
enableInTreeAutoscaling: {{ .Values.ray.enableInTreeAutoscaling }}
{{- if eq .Values.ray.auth.mode "token" }}
authOptions:
  mode: token
  {{- with .Values.ray.auth.existingSecret }}
  secretName: {{ . | quote }}
  {{- end }}
{{- end }}
headGroupSpec:
  serviceType: ClusterIP
  rayStartParams:
    dashboard-host: "0.0.0.0"
    num-cpus: {{ .Values.ray.head.numCpus | quote }}
  template:
    metadata:
      labels:
        {{- include "insarcloud.selectorLabels" . | nindent 8 }}
        app.kubernetes.io/component: ray-head
    spec:
      serviceAccountName: {{ include "insarcloud.serviceAccountName" . }}
      {{- /* the head runs the driver, which deletes the job's Dask cluster at the end (dask.lifecycle=job) */}}
      automountServiceAccountToken: {{ and $driver (include "insarcloud.daskCleanup" . | eq "true") }}
      {{- include "insarcloud.imagePullSecrets" . | nindent 6 }}
      securityContext:
        {{- include "insarcloud.podSecurityContext" . | nindent 8 }}
      {{- with .Values.ray.head.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.ray.head.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: ray-head
          image: {{ include "insarcloud.cpuImage" . }}
          imagePullPolicy: {{ .Values.image.cpu.pullPolicy }}
          ports:
            - name: gcs-server
              containerPort: 6379
            - name: dashboard
              containerPort: 8265
          env:
            {{- if $driver }}
            {{- include "insarcloud.driverEnv" . | nindent 12 }}
            {{- end }}
            {{- include "insarcloud.storageEnv" . | nindent 12 }}
          readinessProbe:
            httpGet:
              port: dashboard
              path: /api/gcs_healthz
            initialDelaySeconds: 10
            periodSeconds: 10
            timeoutSeconds: 2
          livenessProbe:
            httpGet:
              port: dashboard
              path: /api/gcs_healthz
            initialDelaySeconds: 30
            periodSeconds: 20
            timeoutSeconds: 2
            failureThreshold: 6
          resources:
            {{- toYaml .Values.ray.head.resources | nindent 12 }}
          securityContext:
            {{- include "insarcloud.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            {{- include "insarcloud.scratchMount" . | nindent 12 }}
            - name: dshm
              mountPath: /dev/shm
            {{- if $driver }}
            - name: config
              mountPath: /config
              readOnly: true
            {{- end }}
      volumes:
        {{- include "insarcloud.scratchVolume" . | nindent 8 }}
        {{- include "insarcloud.ray.shm" . | nindent 8 }}
        {{- if $driver }}
        - name: config
          configMap:
            name: {{ include "insarcloud.fullname" . }}-area
        {{- end }}
{{- with .Values.ray.gpuWorkers }}
{{- if .enabled }}
workerGroupSpecs:
  - groupName: {{ .groupName }}
    replicas: {{ .replicas }}
    minReplicas: {{ .minReplicas }}
    maxReplicas: {{ .maxReplicas }}
    rayStartParams: {}
    template:
      metadata:
        labels:
          {{- include "insarcloud.selectorLabels" $root | nindent 10 }}
          app.kubernetes.io/component: ray-gpu-worker
      spec:
        serviceAccountName: {{ include "insarcloud.serviceAccountName" $root }}
        automountServiceAccountToken: false
        {{- include "insarcloud.imagePullSecrets" $root | nindent 8 }}
        securityContext:
          {{- include "insarcloud.podSecurityContext" $root | nindent 10 }}
        {{- with .nodeSelector }}
        nodeSelector:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with .tolerations }}
        tolerations:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        containers:
          - name: ray-worker
            image: {{ include "insarcloud.gpuImage" $root }}
            imagePullPolicy: {{ $root.Values.image.gpu.pullPolicy }}
            ports:
              - name: agent
                containerPort: 52365
            env:
              - name: INSARCLOUD_LOG_LEVEL
                value: {{ $root.Values.job.logLevel | quote }}
              {{- include "insarcloud.storageEnv" $root | nindent 14 }}
            readinessProbe:
              httpGet:
                port: agent
                path: /api/local_raylet_healthz
              initialDelaySeconds: 10
              periodSeconds: 10
              timeoutSeconds: 2
            livenessProbe:
              httpGet:
                port: agent
                path: /api/local_raylet_healthz
              initialDelaySeconds: 30
              periodSeconds: 20
              timeoutSeconds: 2
              failureThreshold: 6
            resources:
              requests:
                {{- toYaml .resources.requests | nindent 16 }}
                nvidia.com/gpu: {{ .gpusPerWorker }}
              limits:
                {{- toYaml .resources.limits | nindent 16 }}
                nvidia.com/gpu: {{ .gpusPerWorker }}
            securityContext:
              {{- include "insarcloud.containerSecurityContext" $root | nindent 14 }}
            volumeMounts:
              {{- include "insarcloud.scratchMount" $root | nindent 14 }}
              - name: dshm
                mountPath: /dev/shm
        volumes:
          {{- include "insarcloud.scratchVolume" $root | nindent 10 }}
          {{- include "insarcloud.ray.shm" $root | nindent 10 }}
{{- else }}
workerGroupSpecs: []
{{- end }}
{{- end }}
{{- end }}
{{- end }}
