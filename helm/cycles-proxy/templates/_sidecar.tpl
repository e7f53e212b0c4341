{{/*
Sidecar mode, for an application's chart. Add this chart as a dependency (alias cyclesProxy,
values cyclesProxy.mode: sidecar): it renders the policy ConfigMap and the Secrets. Then, in the
application's pod template:

  spec:
    terminationGracePeriodSeconds: {{ include "cycles-proxy.terminationGracePeriodSeconds" (dict "Values" .Values.cyclesProxy "Release" .Release "appSeconds" 10) }}
    initContainers:
      {{- include "cycles-proxy.sidecar" (dict "Values" .Values.cyclesProxy "Release" .Release "replicas" .Values.replicaCount) | nindent 6 }}
    containers:
      - name: app
        env:
          {{- include "cycles-proxy.appEnv" (dict "Values" .Values.cyclesProxy "Release" .Release) | nindent 10 }}
    volumes:
      {{- include "cycles-proxy.sidecarVolumes" (dict "Values" .Values.cyclesProxy "Release" .Release) | nindent 6 }}

"replicas" is the most replicas the application can run (its autoscaler's maximum, if it has
one): with more than one, the proxies must share a Redis store. templates/example-app.yaml is a
complete example.
*/}}

{{/* The proxy as a native sidecar: one entry of the pod's initContainers. */}}
{{- define "cycles-proxy.sidecar" -}}
{{- if not (hasKey . "replicas") -}}
{{- fail "cycles-proxy.sidecar: pass \"replicas\" (the most replicas the application runs) in the dict, e.g. (dict \"Values\" .Values.cyclesProxy \"Release\" .Release \"replicas\" .Values.replicaCount)" -}}
{{- end -}}
{{- if ne .Values.mode "sidecar" -}}
{{- fail (printf "cycles-proxy.sidecar: the proxy's values say mode: %s; set mode: sidecar to run it next to an application" (toString .Values.mode)) -}}
{{- end -}}
{{- include "cycles-proxy.validate" (dict "ctx" . "replicas" .replicas "what" "the application's replica count") -}}
{{- include "cycles-proxy.container" (dict "ctx" . "sidecar" true) -}}
{{- end -}}

{{/* The sidecar's volumes: entries of the pod's volumes. */}}
{{- define "cycles-proxy.sidecarVolumes" -}}
{{- include "cycles-proxy.volumes" . -}}
{{- end -}}

{{/* The application's environment: the openai SDK reads OPENAI_BASE_URL. */}}
{{- define "cycles-proxy.appEnv" -}}
- name: OPENAI_BASE_URL
  value: {{ printf "http://127.0.0.1:%d/v1" (int .Values.port) | quote }}
{{- end -}}

{{/*
The pod's grace period: the application's own shutdown ("appSeconds"), then the sidecar's
drain (a native sidecar gets SIGTERM only after the application has exited), plus a margin.
*/}}
{{- define "cycles-proxy.terminationGracePeriodSeconds" -}}
{{- add (int (default 0 .appSeconds)) (int (ceil .Values.drainTimeout)) 5 -}}
{{- end -}}
