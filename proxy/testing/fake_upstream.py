"""A local stand-in for an OpenAI-compatible provider, for the demo, tests and benchmarks.

It speaks the wire format of chat completions (JSON and SSE, with `stream_options.include_usage`),
completions, embeddings (bodies in fake_openai.py), the Responses API and Anthropic's Messages
API (fake_shapes.py), and the model list; checks the provider key; and keeps its own books: every
call it billed, and the peak number of calls in flight. It counts prompt tokens by the providers'
published rules with code of its own (fake_tokens.py, fake_claude_tokens.py; what it bills beyond
tokens, service tiers and hosted tool uses, fake_billing.py; a call's whole bill, fake_bills.py),
never with the proxy's estimators or prices, so the tests can check the proxy against it: with
`completion_fraction=1` it bills the whole completion limit, and the proxy's reservation must
cover what it bills. What it is told is FakeSettings (fake_settings.py); its streams are written
by fake_streams.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from proxy.testing import fake_bills, fake_openai, fake_shapes, fake_streams
from proxy.testing.fake_openai import WORD, Billed
from proxy.testing.fake_settings import PROVIDER_HEADERS, RELAYED_HEADERS, FakeSettings


@dataclass
class FakeUpstream:
    settings: FakeSettings = field(default_factory=FakeSettings)
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    raw_paths: list[str] = field(default_factory=list)
    """Every request's path and query as they arrived, still percent-encoded."""
    billed: list[Billed] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    calls: int = 0

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._note_raw_path])
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/responses", self._shaped)
        app.router.add_post("/v1/messages", self._shaped)
        for prefix in ("/v1", "/openai"):
            for operation in _AZURE_OPERATIONS:
                path = f"{prefix}/deployments/{{deployment}}/{operation}"
                app.router.add_post(path, self._azure)
        app.router.add_get("/v1/models", self._models)
        app.router.add_route("*", "/{tail:.*}", self._anything)
        app.on_response_prepare.append(self._account_headers)
        app.on_response_prepare.append(self._hang_up)
        return app

    @web.middleware
    async def _note_raw_path(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.raw_paths.append(request.raw_path)
        return await handler(request)

    async def _hang_up(self, request: web.Request, response: web.StreamResponse) -> None:
        """With `hang_up`, the answer is about to go out (the call is billed): reset instead."""
        if self.settings.hang_up and request.method == "POST" and request.transport is not None:
            request.transport.abort()

    async def _account_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        if self.settings.account_headers:
            response.headers.update(PROVIDER_HEADERS)
            response.headers.update(RELAYED_HEADERS)
            response.headers["x-request-id"] = f"req_{time.monotonic_ns():x}"

    # -- books ---------------------------------------------------------------------------------

    def _admit(self, request: web.Request, body: dict[str, Any]) -> web.Response | None:
        self.requests.append((request.path, dict(request.headers), body))
        if request.path == "/v1/messages":
            if request.headers.get("x-api-key") != self.settings.api_key:
                return fake_openai.error(401, "invalid x-api-key", "authentication_error")
        elif "/deployments/" in request.path:
            if request.headers.get("api-key") != self.settings.api_key:
                return fake_openai.error(
                    401, "Access denied due to invalid subscription key.", "401"
                )
        elif request.headers.get("Authorization") != f"Bearer {self.settings.api_key}":
            return fake_openai.error(401, "Incorrect API key provided.", "invalid_api_key")
        self.calls += 1
        if self.settings.fail_status is not None:
            return self._failure(request.path, self.settings.fail_status)
        if self.settings.fail_every and self.calls % self.settings.fail_every == 0:
            return fake_openai.error(
                500, "The server had an error while processing your request.", None
            )
        return None

    def _failure(self, path: str, status: int) -> web.Response:
        """`fail_error` (or a plain server error) in the shape of the path's API."""
        error = self.settings.fail_error
        if error is None:
            return fake_openai.error(status, "The fake upstream was told to fail.", None)
        if isinstance(error, str):
            return web.Response(status=status, text=error, content_type="text/html")
        if path == "/v1/messages":
            return web.json_response({"type": "error", "error": error}, status=status)
        return web.json_response({"error": error}, status=status)

    def _completion_tokens(self, body: dict[str, Any]) -> int:
        """Per choice: the limit, read as vLLM and SGLang read it (`max_completion_tokens or
        max_tokens`, so a 0 falls through to the other field), or the default without one."""
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            return self.settings.default_completion
        return int(limit * self.settings.completion_fraction)

    def _takes_best_of(self, endpoint: str) -> bool:
        return endpoint == "completions" or self.settings.chat_best_of

    def _bill(self, endpoint: str, body: dict[str, Any], prompt: int, visible: int) -> Billed:
        billed = fake_bills.bill(self.settings, endpoint, body, prompt, visible)
        self.billed.append(billed)
        return billed

    def _bill_shaped(
        self, endpoint: str, body: dict[str, Any], visible: int
    ) -> tuple[Billed, list[dict[str, Any]]]:
        billed, items = fake_bills.bill_shaped(self.settings, endpoint, body, visible)
        self.billed.append(billed)
        return billed, items

    async def _enter(self) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        if self.settings.latency:
            await asyncio.sleep(self.settings.latency)

    # -- endpoints -----------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "chat")

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "completions")

    async def _generate(
        self, request: web.Request, endpoint: str, body: dict[str, Any] | None = None
    ) -> web.StreamResponse:
        body = orjson.loads(await request.read()) if body is None else body
        refused = self._admit(request, body) or self._refuse_parameters(endpoint, body)
        if refused is not None:
            return refused
        await self._enter()
        try:
            model = body["model"]
            prompt = fake_openai.prompt_tokens(endpoint, body)
            # n choices for each prompt of a batch; best_of generates (and bills) that many
            # candidates server-side and returns n (completions, and chat as vLLM takes it).
            prompts = fake_openai.prompts_in_batch(endpoint, body)
            asked = fake_openai.count(body.get("n"))
            best_of = fake_openai.count(body.get("best_of") if self._takes_best_of(endpoint) else 1)
            n = asked * prompts
            generated = max(asked, best_of) * prompts
            per_choice = self._completion_tokens(body)
            # The provider bills the whole generation whether or not anyone is still listening.
            billed = self._bill(endpoint, body, prompt, per_choice * generated)
            if body.get("stream"):
                return await fake_streams.openai_stream(
                    request, self.settings, endpoint, body, billed, per_choice, n
                )
            answer = fake_openai.whole(endpoint, model, per_choice, n)
            answer["usage"] = fake_openai.usage(fake_bills.reported(self.settings, billed))
            if endpoint == "chat":
                answer["service_tier"] = billed.service_tier
            return self._whole(answer, failed=fake_openai.failed)
        finally:
            self.in_flight -= 1

    async def _shaped(self, request: web.Request) -> web.StreamResponse:
        """/v1/responses and /v1/messages, whole or streamed."""
        endpoint = "messages" if request.path == "/v1/messages" else "responses"
        body = orjson.loads(await request.read())
        refused = self._admit(request, body) or self._too_long(request, endpoint, body)
        if refused is not None:
            return refused
        await self._enter()
        try:
            visible = self._completion_tokens(
                {"max_tokens": body.get("max_output_tokens") or body.get("max_tokens")}
            )
            billed, items = self._bill_shaped(endpoint, body, visible)
            if body.get("stream"):
                deltas = fake_shapes.pieces(visible, self.settings.chunks, WORD)
                events = (
                    fake_shapes.messages_events(body, billed, deltas)
                    if endpoint == "messages"
                    else fake_shapes.responses_events(body, billed, deltas, items)
                )
                if isinstance(self.settings.response_error, dict):
                    events = fake_shapes.failing(
                        events,
                        self.settings.response_error,
                        self.settings.response_error_status,
                        beside=self.settings.response_error_beside,
                    )
                if not self.settings.send_usage:
                    events = fake_shapes.without_usage(events)
                return await fake_streams.shaped_stream(request, self.settings, events, endpoint)
            if endpoint == "messages":
                return web.json_response(
                    fake_shapes.message(body, WORD * visible, billed), dumps=fake_openai.dumps
                )
            answer = fake_shapes.response(body, WORD * visible, billed, tools=items)
            call = fake_shapes.function_call(body, self.settings.tool_rounds)
            if call is not None:
                kept = [i for i in answer["output"] if i.get("type") != "message"]
                answer["output"] = [*kept, call]
            status = self.settings.response_error_status
            return self._whole(
                answer, failed=lambda answer, error: {**answer, "status": status, "error": error}
            )
        finally:
            self.in_flight -= 1

    def _whole(
        self,
        answer: dict[str, Any],
        failed: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]],
    ) -> web.Response:
        """A whole answer, or with `response_error` the answer `failed` makes of it (or that
        error's text)."""
        error = self.settings.response_error
        if isinstance(error, str):
            return web.Response(text=error, content_type="text/plain")
        if error is not None:
            answer = failed(answer, error)
        return web.json_response(answer, dumps=fake_openai.dumps)

    def _refuse_parameters(self, endpoint: str, body: dict[str, Any]) -> web.Response | None:
        if self.settings.reject_stream_options and "stream_options" in body:
            return fake_openai.invalid(
                "Unrecognized request argument supplied: stream_options",
                "stream_options",
                "invalid_request",
            )
        return fake_openai.refuse_by_model(endpoint, body)

    def _too_long(
        self, request: web.Request, endpoint: str, body: dict[str, Any]
    ) -> web.Response | None:
        """Anthropic refuses a prompt above the context window unless a beta widens it."""
        if endpoint != "messages" or "context-1m" in request.headers.get("anthropic-beta", ""):
            return None
        prompt = fake_openai.prompt_tokens(endpoint, body)
        if prompt <= self.settings.long_context_above:
            return None
        return fake_openai.invalid(
            f"prompt is too long: {prompt} tokens > {self.settings.long_context_above} maximum",
            "messages",
            "invalid_request_error",
        )

    async def _azure(self, request: web.Request) -> web.StreamResponse:
        """Azure OpenAI: the deployment in the path names the model; api-version is required."""
        body = orjson.loads(await request.read())
        operation = request.path.split("/deployments/", 1)[1].split("/", 1)[1]
        model = self.settings.deployments.get(request.match_info["deployment"])
        if "api-version" not in request.query or model is None:
            self.requests.append((request.path, dict(request.headers), body))
            missing = "DeploymentNotFound" if model is None else "404"
            return fake_openai.error(404, "Resource not found", missing)
        body = {**body, "model": model}
        if operation == "embeddings":
            return await self._embeddings(request, body)
        return await self._generate(request, _AZURE_OPERATIONS[operation], body)

    async def _embeddings(
        self, request: web.Request, body: dict[str, Any] | None = None
    ) -> web.StreamResponse:
        body = orjson.loads(await request.read()) if body is None else body
        refused = self._admit(request, body)
        if refused is not None:
            return refused
        await self._enter()
        try:
            prompt = fake_openai.prompt_tokens("embeddings", body)
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            self.billed.append(Billed("embeddings", body["model"], prompt, 0))
            data = [
                {"object": "embedding", "index": i, "embedding": [0.0, 0.1, 0.2]}
                for i in range(len(inputs))
            ]
            usage = {"prompt_tokens": prompt, "total_tokens": prompt}
            return web.json_response(
                {"object": "list", "data": data, "model": body["model"], "usage": usage},
                dumps=fake_openai.dumps,
            )
        finally:
            self.in_flight -= 1

    async def _models(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.headers), {}))
        if self.settings.fail_status is not None:
            return self._failure(request.path, self.settings.fail_status)
        if self.settings.latency:
            await asyncio.sleep(self.settings.latency)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "fake"}
            for name in ("gpt-4o", "gpt-4o-mini")
        ]
        return web.json_response({"object": "list", "data": data})

    async def _anything(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.headers), {}))
        return web.json_response({"path": request.path, "method": request.method})


_AZURE_OPERATIONS = {
    "chat/completions": "chat",
    "completions": "completions",
    "embeddings": "embeddings",
}
