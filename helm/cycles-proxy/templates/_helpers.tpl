{{/*
Every helper here takes a context with .Values (this chart's values) and .Release, and nothing
else, so that an application's chart can call the sidecar templates with
(dict "Values" .Values.cyclesProxy "Release" .Release) and get the same names this chart gives
its ConfigMap and Secrets.
*/}}

{{- define "cycles-proxy.name" -}}
{{- default "cycles-proxy" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cycles-proxy.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "cycles-proxy.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "cycles-proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cycles-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cycles-proxy.labels" -}}
{{ include "cycles-proxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Names of the objects the proxy container reads. */}}
{{- define "cycles-proxy.policiesConfigMap" -}}
{{- .Values.policies.existingConfigMap | default (printf "%s-policies" (include "cycles-proxy.fullname" .)) -}}
{{- end -}}

{{/* The provider-keys Secret, or nothing when there is none to load. */}}
{{- define "cycles-proxy.providerKeysSecret" -}}
{{- if .Values.providerKeys.existingSecret -}}
{{- .Values.providerKeys.existingSecret -}}
{{- else if .Values.providerKeys.values -}}
{{- printf "%s-provider-keys" (include "cycles-proxy.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The admin-token Secret, or nothing when no token is configured. */}}
{{- define "cycles-proxy.adminSecret" -}}
{{- if .Values.admin.existingSecret -}}
{{- .Values.admin.existingSecret -}}
{{- else if .Values.admin.token -}}
{{- printf "%s-admin" (include "cycles-proxy.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The metrics-token Secret, or nothing when no token is configured. */}}
{{- define "cycles-proxy.metricsSecret" -}}
{{- if .Values.metrics.token.existingSecret -}}
{{- .Values.metrics.token.existingSecret -}}
{{- else if .Values.metrics.token.value -}}
{{- printf "%s-metrics-token" (include "cycles-proxy.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "cycles-proxy.hasSharedStore" -}}
{{- if or .Values.store.url .Values.store.existingSecret -}}true{{- end -}}
{{- end -}}

{{/*
Refuse what would quietly multiply every budget: the memory:// store keeps budgets in one
process, so two replicas (or workers) would each hand out the whole budget.
Takes (dict "ctx" <context> "replicas" <most replicas the pods can reach> "what" <which value>).
*/}}
{{- define "cycles-proxy.validate" -}}
{{- $v := .ctx.Values -}}
{{- if not (include "cycles-proxy.hasSharedStore" .ctx) -}}
{{- if gt (int .replicas) 1 -}}
{{- fail (printf "cycles-proxy: %s is %d but no Redis store is set. The default memory:// store keeps budgets inside one process, so every replica would enforce its own copy of each budget. Set store.url (redis://, rediss:// or redis+cluster://) or store.existingSecret, or run one replica." .what (int .replicas)) -}}
{{- end -}}
{{- if gt (int $v.workers) 1 -}}
{{- fail (printf "cycles-proxy: workers is %d but no Redis store is set; the memory:// store lives in one process. Set store.url or store.existingSecret, or keep workers at 1." (int $v.workers)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* An exec probe: the sidecar listens on loopback, which the kubelet's httpGet cannot reach. */}}
{{- define "cycles-proxy.execProbe" -}}
exec:
  command:
    - python
    - -c
    - "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)"
    - {{ printf "http://127.0.0.1:%d%s" (int .port) .path | quote }}
{{- end -}}

{{/*
The proxy container, for both modes.
Takes (dict "ctx" <context> "sidecar" <bool>).
*/}}
{{- define "cycles-proxy.container" -}}
{{- $v := .ctx.Values -}}
{{- $sidecar := .sidecar -}}
{{- $host := ternary "127.0.0.1" "0.0.0.0" $sidecar -}}
{{- $adminExposed := and (not $sidecar) $v.admin.enabled $v.admin.service.enabled -}}
{{- $providerKeys := include "cycles-proxy.providerKeysSecret" .ctx -}}
{{- $adminSecret := include "cycles-proxy.adminSecret" .ctx -}}
{{- $metricsSecret := include "cycles-proxy.metricsSecret" .ctx -}}
- name: cycles-proxy
  image: {{ printf "%s:%s" $v.image.repository $v.image.tag | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if $sidecar }}
  # A native sidecar (Kubernetes >= 1.29): an init container that keeps running. It is started,
  # and its startup probe passes, before the app's containers start; it is stopped after they
  # have exited, and a Job's pod completes without waiting for it.
  restartPolicy: Always
  {{- end }}
  args:
    - serve
    - --policy=/etc/cycles/policies
    - --listen={{ $host }}:{{ $v.port }}
    {{- if not $v.admin.enabled }}
    - --admin-listen=off
    {{- else }}
    - --admin-listen={{ ternary "0.0.0.0" "127.0.0.1" $adminExposed }}:{{ $v.admin.port }}
    {{- end }}
    - --drain-timeout={{ $v.drainTimeout }}
    {{- if $sidecar }}
    # Kubernetes stops a native sidecar only after the app's containers have exited: nobody is
    # left to serve, so drain at once instead of serving out the drain timeout.
    - --sigterm=drain
    {{- if $v.metrics.sidecarPort }}
    - --metrics-listen=0.0.0.0:{{ $v.metrics.sidecarPort }}
    {{- end }}
    {{- else if $v.metrics.gatewayPort }}
    # The metrics name tenants: a listener of their own, never the callers' port.
    - --metrics-listen=0.0.0.0:{{ $v.metrics.gatewayPort }}
    {{- if and $v.metrics.allowUnauthenticated (not $metricsSecret) }}
    - --allow-unauthenticated-metrics
    {{- end }}
    {{- end }}
    - --reload-every={{ $v.policies.reloadEvery }}
    - --log-level={{ $v.logLevel }}
    {{- if gt (int $v.workers) 1 }}
    - --workers={{ $v.workers }}
    {{- end }}
    {{- if $v.store.requireNoeviction }}
    - --require-noeviction
    {{- end }}
    {{- range $v.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  env:
    - name: CYCLES_LOG_FORMAT
      value: {{ $v.logFormat | quote }}
    {{- if $v.store.existingSecret }}
    - name: CYCLES_STORE
      valueFrom:
        secretKeyRef:
          name: {{ $v.store.existingSecret }}
          key: {{ $v.store.existingSecretKey }}
    {{- else if $v.store.url }}
    - name: CYCLES_STORE
      value: {{ $v.store.url | quote }}
    {{- end }}
    {{- if and $v.admin.enabled $adminSecret }}
    - name: CYCLES_ADMIN_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ $adminSecret }}
          key: {{ $v.admin.tokenKey }}
    - name: CYCLES_ADMIN_READ_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ $adminSecret }}
          key: {{ $v.admin.readTokenKey }}
          optional: true
    {{- end }}
    {{- if $metricsSecret }}
    - name: CYCLES_METRICS_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ $metricsSecret }}
          key: {{ $v.metrics.token.key }}
    {{- end }}
    {{- with $v.metrics.tenants }}
    - name: CYCLES_METRICS_TENANTS
      value: {{ join "," . | quote }}
    {{- end }}
    {{- if not (kindIs "invalid" $v.metrics.maxTenants) }}
    - name: CYCLES_METRICS_MAX_TENANTS
      value: {{ $v.metrics.maxTenants | toString | quote }}
    {{- end }}
    {{- with $v.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if $providerKeys }}
  envFrom:
    - secretRef:
        name: {{ $providerKeys }}
  {{- end }}
  {{- if $sidecar }}
  # Loopback only: the kubelet's httpGet probes go to the pod IP, so these run in the container.
  startupProbe:
    {{- include "cycles-proxy.execProbe" (dict "port" $v.port "path" "/readyz") | nindent 4 }}
    periodSeconds: 1
    timeoutSeconds: 3
    failureThreshold: 60
  livenessProbe:
    {{- include "cycles-proxy.execProbe" (dict "port" $v.port "path" "/healthz") | nindent 4 }}
    periodSeconds: 20
    timeoutSeconds: 3
    failureThreshold: 3
  readinessProbe:
    {{- include "cycles-proxy.execProbe" (dict "port" $v.port "path" "/readyz") | nindent 4 }}
    periodSeconds: 10
    timeoutSeconds: 3
    failureThreshold: 3
  resources:
    {{- toYaml $v.sidecar.resources | nindent 4 }}
  {{- with $v.metrics.sidecarPort }}
  ports:
    - name: cycles-metrics
      containerPort: {{ . }}
      protocol: TCP
  {{- end }}
  {{- else }}
  ports:
    - name: http
      containerPort: {{ $v.port }}
      protocol: TCP
    {{- if $adminExposed }}
    - name: admin
      containerPort: {{ $v.admin.port }}
      protocol: TCP
    {{- end }}
    {{- with $v.metrics.gatewayPort }}
    - name: metrics
      containerPort: {{ . }}
      protocol: TCP
    {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: http
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 3
  readinessProbe:
    httpGet:
      path: /readyz
      port: http
    periodSeconds: 5
    timeoutSeconds: 2
    failureThreshold: 2
  lifecycle:
    # The Service stops sending new connections a moment after the pod starts terminating; wait
    # that out before SIGTERM closes the listener.
    preStop:
      exec:
        command: ["sleep", {{ $v.gateway.preStopSeconds | toString | quote }}]
  resources:
    {{- toYaml $v.gateway.resources | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
  volumeMounts:
    - name: cycles-proxy-policies
      mountPath: /etc/cycles/policies
      readOnly: true
    - name: cycles-proxy-tmp
      mountPath: /tmp
{{- end -}}

{{/* The proxy's volumes: the policy directory and a writable /tmp. */}}
{{- define "cycles-proxy.volumes" -}}
- name: cycles-proxy-policies
  configMap:
    name: {{ include "cycles-proxy.policiesConfigMap" . }}
- name: cycles-proxy-tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}
