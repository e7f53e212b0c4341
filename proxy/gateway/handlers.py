"""One function per route. Thin: identify → admit → (pipeline.py) forward → settle → respond."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web

from proxy.core.errors import BadGateway, Forbidden, NotFound, UpstreamError
from proxy.gateway import observe, pipeline, provider_errors, relay
from proxy.gateway.pipeline import PIPELINE

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def budgeted(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses, /v1/messages."""
    pipe = request.app[PIPELINE]
    admission = pipe.admission
    scope = await admission.identify(request)
    tenant = await admission.tenant(scope.tenant)
    raw = await admission.body(request, admission.policy.limits.body_limit(request.path))
    claim = await admission.claim(request, scope, raw)
    if isinstance(claim, web.Response):
        # A replay reserves nothing, so no reserve script sees the tenant's status.
        await admission.check_active(scope.tenant)
        return claim
    async with claim:
        return await pipeline.run(request, pipe, scope, tenant, raw, claim)


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and serving."""
    return web.json_response({"status": "ok"})


async def models(request: web.Request) -> web.StreamResponse:
    """GET /v1/models and /v1/models/{model}: forwarded, not budgeted."""
    runtime = request.app[PIPELINE].runtime
    model = request.match_info.get("model")
    upstream = runtime.policy.upstream_for(model or "*") or runtime.default_upstream()
    if upstream is None:
        raise NotFound("No upstream is configured.")
    suffix = "/models" if model is None else f"/models/{relay.path_segment(model)}"
    return await passthrough(request, upstream.name, suffix)


async def passthrough(request: web.Request, upstream_name: str, suffix: str) -> web.StreamResponse:
    """Forward an unbudgeted call as is, through the header allow-lists, for an active tenant."""
    pipe = request.app[PIPELINE]
    admission, policy = pipe.admission, pipe.admission.policy
    await admission.check_active((await admission.identify(request)).tenant)
    upstream = policy.upstreams[upstream_name]
    url = relay.upstream_url(upstream.base_url, suffix)
    if request.rel_url.raw_query_string:
        url += "?" + request.rel_url.raw_query_string
    body = await admission.body(request, policy.limits.body_limit(request.path))
    key = pipe.runtime.provider_keys.get(upstream.name)
    headers = relay.headers_up(request.headers, key, upstream.auth)
    headers[observe.REQUEST_ID] = observe.request_id_of(request)
    timeouts = upstream.timeouts or policy.timeouts
    first_byte = relay.Deadline.after(timeouts, "first_byte")
    try:
        answer = await relay.send(
            pipe.session, request.method, url, headers, body or None, timeouts, first_byte
        )
    except UpstreamError as exc:
        raise BadGateway(f"Upstream {upstream.name!r}: {exc}.") from None
    try:
        limit = policy.limits.max_answer_bytes
        data = await relay.read_body(answer, relay.Deadline.after(timeouts, "stream_total"), limit)
    except UpstreamError as exc:
        raise BadGateway(f"Upstream {upstream.name!r}: {exc}.") from None
    finally:
        answer.release()
    if answer.status >= 400:
        return provider_errors.error_response(answer, data, anthropic=False)
    return web.Response(
        body=data, status=answer.status, headers=relay.headers_down(answer.headers.items())
    )


def quitter(on_quit: Callable[[], None]) -> Handler:
    """POST /quitquitquit: the app next to this sidecar has exited, so stop now (in-flight
    calls still finish within the drain timeout). Only from the pod itself: a loopback peer."""

    async def quit_(request: web.Request) -> web.StreamResponse:
        if not _loopback_peer(request):
            raise Forbidden("/quitquitquit is accepted only from a loopback address.")
        on_quit()
        return web.json_response({"status": "stopping"}, status=202)

    return quit_


def _loopback_peer(request: web.Request) -> bool:
    try:
        return request.remote is not None and ipaddress.ip_address(request.remote).is_loopback
    except ValueError:
        return False


async def fallback(request: web.Request) -> web.StreamResponse:
    """Every other path: 404 unless an upstream lists it under `passthrough:`."""
    policy = request.app[PIPELINE].runtime.policy
    path = request.path
    if path.startswith("/v1/"):
        suffix = path[len("/v1") :]
        for upstream in policy.upstreams.values():
            if suffix in upstream.passthrough:
                return await passthrough(request, upstream.name, suffix)
    raise NotFound(
        f"No such route: {request.method} {path}. cycles-proxy forwards only budgeted endpoints "
        "and paths the policy lists under `passthrough:`."
    )
