"""A local stand-in for an OpenAI-compatible provider, for the demo, tests and benchmarks.

It speaks the wire format of chat completions (JSON and SSE, with `stream_options.include_usage`),
completions, embeddings (bodies in fake_openai.py), the Responses API and Anthropic's Messages
API (fake_shapes.py), and the model list; checks the provider key; and keeps its own books: every
call it billed, and the peak number of calls in flight. It counts prompt tokens by the providers'
published rules with code of its own (fake_tokens.py; what it bills beyond tokens, service tiers
and hosted tool uses, fake_billing.py), never with the proxy's estimators or prices, so the
tests can check the proxy against it: with `completion_fraction=1` it bills the whole completion
limit, and the proxy's reservation must cover what it bills.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from proxy.testing import fake_billing, fake_openai, fake_shapes, fake_tokens
from proxy.testing.fake_openai import WORD, Billed


@dataclass
class FakeSettings:
    api_key: str = "sk-fake-upstream-0123456789"
    completion_fraction: float = 1.0
    """Share of the completion limit actually generated (per choice)."""
    default_completion: int = 50
    """Tokens generated per choice when the request names no limit."""
    chunks: int = 5
    latency: float = 0.0
    """Seconds a call waits before it answers, before any header is sent (a slow provider):
    whole answers, streams and the model list. Refusals (a wrong key, `fail_status`,
    `fail_every`) answer at once. As a provider does, it bills the whole generation when the
    wait is over, even if the caller gave up and left during it."""
    chunk_delay: float = 0.0
    """Seconds between stream chunks. The fake writes on whether or not the proxy's client is
    still there, and bills the whole generation, as a provider does."""
    fail_status: int | None = None
    """Answer every call (the model list too) with this error status."""
    fail_error: dict[str, Any] | str | None = None
    """The error object those answers carry, OpenAI's shape (`message`, `type`, `param`,
    `code`; on /v1/messages Anthropic's: `type`, `message`), e.g. ACCOUNT_RATE_LIMIT; a string:
    an HTML page instead (a load balancer's); None: a plain server error."""
    fail_every: int = 0
    """Every k-th budgeted call answers 500 (0: never)."""
    send_usage: bool = True
    """Honour stream_options.include_usage (older vLLM and some Azure versions do not); False
    also leaves the usage out of Responses and Messages streams (compatible servers)."""
    reject_stream_options: bool = False
    """Answer 400 to any `stream_options`, as older vLLM and Azure API versions do."""
    continuous_usage: bool = False
    """Chat and completion streams carry a usage object on every chunk, running totals (vLLM's
    continuous usage stats), whether asked or not."""
    cached_tokens: int = 0
    """Prompt tokens reported as read from the cache (chat, Responses, Messages)."""
    cache_write_tokens: int = 0
    """Prompt tokens reported as written to the 5-minute cache (Messages), besides those of
    `cache_control_writes`."""
    cache_control_writes: bool = True
    """Messages: a request's `cache_control` breakpoints write the prompt up to them to the
    cache, as Anthropic's first call with a new prefix does (fake_tokens.claude_cache_writes),
    billed at each breakpoint's TTL and reported in `cache_creation`."""
    cache_ttl_split: bool = True
    """Messages: report cache writes by TTL (`cache_creation`); False: only their total, as
    servers that predate one-hour caches do."""
    cache_split_zeroed: bool = False
    """Messages: report the `cache_creation` split as 0/0 while `cache_creation_input_tokens`
    holds every write, as Anthropic has on web search turns."""
    cache_writes_late: bool = False
    """Messages streams: `message_start` reports no cache writes; the final `message_delta`
    reports them in `cache_creation_input_tokens`, without resending `cache_creation`."""
    openai_cache_write_tokens: int = 0
    """Chat, Responses: prompt tokens written to the prompt cache, billed at the model's write
    price and reported as `cache_write_tokens` (`prompt_tokens_details`, Responses'
    `input_tokens_details`), as OpenAI's newer models do; at most the uncached prompt."""
    reasoning_tokens: int = 0
    """Chat, Responses: output tokens spent reasoning, billed but never streamed."""
    audio_prompt_tokens: int | None = None
    """Chat: prompt tokens reported as audio (`prompt_tokens_details.audio_tokens`); None: those
    of the request's `input_audio` parts (fake_billing.audio_prompt_tokens), as OpenAI does."""
    audio_completion_tokens: int | None = None
    """Chat: completion tokens reported as audio, billed on top of the text; None: when the
    request asks for audio (`modalities`), half of what it generates is audio, within the
    completion (fake_billing.audio_completion_tokens), else none."""
    deployments: dict[str, str] = field(default_factory=dict)
    """Azure: deployment → the model it runs (other deployments are 404)."""
    cut_after: int | None = None
    """End a stream cleanly after this many text deltas (chat and completions: chunks), before
    its usage and `[DONE]`; 0 sends the headers and nothing else."""
    stream_error: dict[str, Any] | None = None
    """With `cut_after`: the error a provider sends in the middle of a stream, written as its
    API writes one where the stream is cut (chat: `data: {"error": ...}`; Messages: `event:
    error` with `{"type": "error", "error": ...}`; Responses: `event: error` with the fields at
    the top), e.g. ACCOUNT_RATE_LIMIT."""
    response_error: dict[str, Any] | None = None
    """Responses: every response fails with this `error` object (`code`, `message`), billed and
    reporting its usage as usual: a whole answer is a 200 with `status: failed` and the error, a
    stream ends with `response.failed` in place of `response.completed`."""
    send_done: bool = True
    """Chat, completions: end a stream with `data: [DONE]`; False: end it right after the usage
    chunk (or the last chunk), as some OpenAI-compatible servers do."""
    underreport_completion: int = 0
    """Chat, completions: completion tokens left out of every usage report (a provider that
    reports less than it generated); `billed` keeps what was generated."""
    hang_up: bool = False
    """Every POST: read the request, wait `latency`, bill as usual, then reset the connection
    instead of answering (a provider that crashed mid-call, or a connection cut after the
    request was written)."""
    account_headers: bool = True
    """Send the headers a real provider sends with every answer: PROVIDER_HEADERS (which
    describe the shared account and must stay behind the proxy) and RELAYED_HEADERS."""
    service_tier: str = "default"
    """Chat, Responses, Messages: the tier a call that asks for `auto`, or names no tier, is
    served at (a call naming a tier is served at it). Answers say the tier served: OpenAI's
    `service_tier` (on every chunk of a chat stream), Anthropic's `usage.service_tier`
    (`standard` for default); `billed` keeps it."""
    hosted_tool_calls: int = 0
    """Responses: the built-in tool calls a response makes (at most its `max_tool_calls`), all
    of the first hosted tool in `tools`, as `<tool>_call` output items (code_interpreter's share
    one container, billed once). Messages: the uses of each web_search / web_fetch server tool
    (at most its `max_uses`), reported in `usage.server_tool_use`. Each use is billed."""
    tool_input_tokens: int = 0
    """Input tokens each hosted tool use adds to the prompt (search results), billed. A Messages
    stream reports them in the final `message_delta`, as Anthropic does."""
    document_tokens: int = 0
    """Input tokens billed for each document input (fake_tokens.documents) beyond its JSON: the
    pages the provider reads from a file id, a URL or a PDF."""
    chat_best_of: bool = True
    """Chat: generate (and bill) `best_of` candidates per choice set and return `n`, as vLLM
    does; False: ignore `best_of` on chat, as a server that does not take it. Completions always
    take it."""
    long_context_above: int = 200_000
    """A prompt above this many tokens is billed at long-context prices (`billed`). On Messages
    such a prompt needs an `anthropic-beta: context-1m-…` header, else it is refused (400)."""


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
            if body.get("stream"):
                return await self._stream(request, endpoint, body, prompt, per_choice, n, generated)
            billed = self._bill(endpoint, body, prompt, per_choice * generated)
            answer = fake_openai.whole(endpoint, model, per_choice, n)
            answer["usage"] = fake_openai.usage(self._reported(billed))
            if endpoint == "chat":
                answer["service_tier"] = billed.service_tier
            return web.json_response(answer, dumps=fake_openai.dumps)
        finally:
            self.in_flight -= 1

    async def _stream(
        self,
        request: web.Request,
        endpoint: str,
        body: dict[str, Any],
        prompt: int,
        per_choice: int,
        n: int,
        generated: int,
    ) -> web.StreamResponse:
        model = body["model"]
        usage_asked = bool((body.get("stream_options") or {}).get("include_usage"))
        with_usage = usage_asked and self.settings.send_usage
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        # The provider bills the whole generation whether or not anyone is still listening.
        billed = self._bill(endpoint, body, prompt, per_choice * generated)
        chunks = max(1, min(self.settings.chunks, per_choice or 1))
        try:
            await response.prepare(request)
            texts = (endpoint, model, billed, per_choice, n, chunks, with_usage)
            if not await self._chunks(response, *texts):
                if self.settings.stream_error is not None:
                    await response.write(fake_openai.event({"error": self.settings.stream_error}))
                await response.write_eof()
                return response
            if with_usage:
                final = fake_openai.chunk(endpoint, model, 0, "", False)
                final["choices"] = []
                final["usage"] = fake_openai.usage(self._reported(billed))
                if endpoint == "chat":
                    final["service_tier"] = billed.service_tier
                await response.write(fake_openai.event(final))
            if self.settings.send_done:
                await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionError:
            pass
        return response

    async def _chunks(
        self,
        response: web.StreamResponse,
        endpoint: str,
        model: str,
        billed: Billed,
        per_choice: int,
        n: int,
        chunks: int,
        with_usage: bool,
    ) -> bool:
        """Write the text chunks (`null` usage on each when the usage chunk will follow);
        False when `cut_after` ended the stream first."""
        so_far = written = 0
        for i in range(chunks):
            tokens = per_choice // chunks + (1 if i < per_choice % chunks else 0)
            for index in range(n):
                if self.settings.cut_after is not None and written >= self.settings.cut_after:
                    return False
                chunk = fake_openai.chunk(endpoint, model, index, WORD * tokens, i == chunks - 1)
                if endpoint == "chat":
                    chunk["service_tier"] = billed.service_tier
                if with_usage:
                    chunk["usage"] = None
                if self.settings.continuous_usage:
                    so_far += tokens
                    last = i == chunks - 1 and index == n - 1
                    total = billed.completion_tokens if last else so_far
                    chunk["usage"] = fake_openai.usage(
                        dataclasses.replace(billed, completion_tokens=total)
                    )
                await response.write(fake_openai.event(chunk))
                written += 1
            if self.settings.chunk_delay:
                await asyncio.sleep(self.settings.chunk_delay)
        return True

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
                if self.settings.response_error is not None:
                    events = fake_shapes.failing(events, self.settings.response_error)
                if not self.settings.send_usage:
                    events = fake_shapes.without_usage(events)
                return await self._stream_events(request, events, endpoint)
            if endpoint == "messages":
                return web.json_response(
                    fake_shapes.message(body, WORD * visible, billed), dumps=fake_openai.dumps
                )
            answer = fake_shapes.response(body, WORD * visible, billed, tools=items)
            if self.settings.response_error is not None:
                answer.update(status="failed", error=self.settings.response_error)
            call = fake_shapes.function_call(body)
            if call is not None:
                kept = [i for i in answer["output"] if i.get("type") != "message"]
                answer["output"] = [*kept, call]
            return web.json_response(answer, dumps=fake_openai.dumps)
        finally:
            self.in_flight -= 1

    def _bill(self, endpoint: str, body: dict[str, Any], prompt: int, visible: int) -> Billed:
        """Chat bills cached, reasoning and audio tokens, documents and the service tier as the
        settings say; completions only what it generated."""
        model = body["model"]
        billed = Billed(endpoint, model, prompt, visible)
        if endpoint == "chat":
            s = self.settings
            documents = fake_tokens.documents(endpoint, body)
            prompt += documents * s.document_tokens
            cached = min(s.cached_tokens, prompt)
            written = min(s.openai_cache_write_tokens, prompt - cached)
            audio = s.audio_prompt_tokens
            if audio is None:
                audio = fake_billing.audio_prompt_tokens(endpoint, body)
            audio_in = min(audio, prompt - cached - written)
            audio_out = s.audio_completion_tokens
            completion = visible + s.reasoning_tokens + (audio_out or 0)
            if audio_out is None:
                audio_out = fake_billing.audio_completion_tokens(endpoint, body, visible)
            billed = Billed(
                endpoint,
                model,
                prompt,
                completion,
                cached,
                written,
                reasoning_tokens=s.reasoning_tokens,
                audio_prompt_tokens=audio_in,
                audio_completion_tokens=audio_out,
                service_tier=fake_billing.served_tier(body, s.service_tier),
                documents=documents,
                long_context=prompt > s.long_context_above,
            )
        self.billed.append(billed)
        return billed

    def _reported(self, billed: Billed) -> Billed:
        """What the usage report says was billed: less, with `underreport_completion`."""
        if not self.settings.underreport_completion:
            return billed
        completion = max(0, billed.completion_tokens - self.settings.underreport_completion)
        return dataclasses.replace(billed, completion_tokens=completion)

    def _refuse_parameters(self, endpoint: str, body: dict[str, Any]) -> web.Response | None:
        if self.settings.reject_stream_options and "stream_options" in body:
            return fake_openai.invalid(
                "Unrecognized request argument supplied: stream_options",
                "stream_options",
                "invalid_request",
            )
        return fake_openai.refuse_by_model(endpoint, body)

    def _bill_shaped(
        self, endpoint: str, body: dict[str, Any], visible: int
    ) -> tuple[Billed, list[dict[str, Any]]]:
        """What a Responses or Messages call bills, and the hosted tool calls' output items."""
        s = self.settings
        documents = fake_tokens.documents(endpoint, body)
        calls, items = fake_billing.hosted_tools(endpoint, body, s.hosted_tool_calls)
        uses = len(items) if endpoint == "responses" else sum(calls.values())
        tool_tokens = uses * s.tool_input_tokens
        if "code_interpreter" in calls:
            calls["code_interpreter"] = 1  # its calls share one container, billed once
        prompt = fake_openai.prompt_tokens(endpoint, body) + documents * s.document_tokens
        prompt += tool_tokens
        cached = min(s.cached_tokens, prompt)
        five, hour = (0, 0)
        if endpoint == "messages" and s.cache_control_writes:
            five, hour = fake_tokens.claude_cache_writes(body)
        elif endpoint == "responses":
            five = s.openai_cache_write_tokens
        written = min(s.cache_write_tokens + five, prompt - cached)
        hour = min(hour, prompt - cached - written)
        reasoning = s.reasoning_tokens if endpoint == "responses" else 0
        billed = Billed(
            endpoint,
            body["model"],
            prompt,
            visible + reasoning,
            cached,
            written,
            reasoning,
            service_tier=fake_billing.served_tier(body, s.service_tier),
            tool_calls=calls,
            tool_input_tokens=tool_tokens,
            documents=documents,
            long_context=prompt > s.long_context_above,
            cache_write_1h_tokens=hour,
            cache_split_reported=s.cache_ttl_split,
            cache_split_zeroed=s.cache_split_zeroed,
            cache_writes_late=s.cache_writes_late,
        )
        self.billed.append(billed)
        return billed, items

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

    async def _stream_events(
        self, request: web.Request, events: Iterator[fake_shapes.Event], endpoint: str
    ) -> web.StreamResponse:
        """Write SSE events; with `cut_after`, stop after that many deltas, usage unsent (and
        `stream_error` sent)."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        deltas = 0
        try:
            await response.prepare(request)
            for kind, event in events:
                if kind in fake_shapes.DELTAS:
                    deltas += 1
                    if self.settings.cut_after is not None and deltas > self.settings.cut_after:
                        await self._stream_error(response, endpoint)
                        break
                    if self.settings.chunk_delay:
                        await asyncio.sleep(self.settings.chunk_delay)
                await response.write(event)
            await response.write_eof()
        except ConnectionError:
            pass
        return response

    async def _stream_error(self, response: web.StreamResponse, endpoint: str) -> None:
        error = self.settings.stream_error
        if error is None:
            return
        if endpoint == "messages":
            await response.write(fake_shapes.sse("error", {"type": "error", "error": error})[1])
        else:
            await response.write(fake_shapes.sse("error", {"type": "error", **error})[1])

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


ACCOUNT_RATE_LIMIT = {
    "message": "Rate limit reached for gpt-4o in organization org-fake-shared-account on tokens "
    "per min (TPM): Limit 30000, Used 29000, Requested 2000. Please try again in 2s. Visit "
    "https://platform.openai.com/account/rate-limits to learn more.",
    "type": "tokens",
    "param": None,
    "code": "rate_limit_exceeded",
}
"""OpenAI's 429 for the account's own limit (a `fail_error`): it names the organisation every
tenant shares and that account's limit and usage, which must stay behind the proxy."""
ANTHROPIC_RATE_LIMIT = {
    "type": "rate_limit_error",
    "message": "This request would exceed the rate limit for your organization "
    "(5d2c1a7e-0b9f-4c3e-9d1a-fake00shared) of 40,000 input tokens per minute. For details, "
    "refer to: https://docs.claude.com/en/api/rate-limits.",
}
"""Anthropic's 429 for the account's limit, as a `fail_error` on /v1/messages."""

PROVIDER_HEADERS = {
    "openai-organization": "org-fake-shared-account",
    "openai-project": "proj_fake_shared",
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-limit-tokens": "30000000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-remaining-tokens": "29999000",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-reset-tokens": "2ms",
}
"""What OpenAI says about the account every tenant shares: its organisation, project and rate
limits. The proxy must not relay them."""
RELAYED_HEADERS = {"openai-version": "2020-10-01", "openai-processing-ms": "42"}
"""Headers about the answer itself, which the proxy relays (and `x-request-id: req_…`, new on
every answer, which the proxy replaces with the call's own request id)."""

_AZURE_OPERATIONS = {
    "chat/completions": "chat",
    "completions": "completions",
    "embeddings": "embeddings",
}
