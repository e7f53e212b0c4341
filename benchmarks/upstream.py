"""A lean, deterministic OpenAI-compatible provider for the benchmarks.

`proxy/testing/fake_upstream.py` tokenizes every prompt and keeps a list of every call it billed,
which is right for tests and wrong for a benchmark: its CPU would share core 1 with the load
generator and its memory would grow with the run. This one answers from bytes built once per model:

    POST /v1/chat/completions            a chat completion with `usage` (40 completion tokens)
    ... with "stream": true              20 SSE chunks (each its own write), then a usage chunk
                                         when stream_options.include_usage is set, then [DONE]
    GET  /healthz                        200

It does not check the provider key: the load generator checks every answer's status instead.

Run: python -m benchmarks.upstream --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import functools

import orjson
import uvloop
from aiohttp import web

CHUNKS = 20
TOKENS_PER_CHUNK = 2
PROMPT_TOKENS = 38
COMPLETION_TOKENS = CHUNKS * TOKENS_PER_CHUNK
CREATED = 1_700_000_000
USAGE = {
    "prompt_tokens": PROMPT_TOKENS,
    "completion_tokens": COMPLETION_TOKENS,
    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0},
}
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def _event(obj: object) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


@functools.cache
def completion(model: str) -> bytes:
    """The whole (non-stream) answer for `model`."""
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " hello" * COMPLETION_TOKENS},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": USAGE,
        }
    )


@functools.cache
def stream_events(model: str, with_usage: bool) -> tuple[bytes, ...]:
    """The SSE events of a streamed answer for `model`, in order, [DONE] last."""
    events = []
    for i in range(CHUNKS):
        chunk: dict[str, object] = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": " hello" * TOKENS_PER_CHUNK},
                    "finish_reason": "stop" if i == CHUNKS - 1 else None,
                    "logprobs": None,
                }
            ],
        }
        if with_usage:
            chunk["usage"] = None
        events.append(_event(chunk))
    if with_usage:
        final = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": [],
            "usage": USAGE,
        }
        events.append(_event(final))
    events.append(b"data: [DONE]\n\n")
    return tuple(events)


async def chat(request: web.Request) -> web.StreamResponse:
    body = orjson.loads(await request.read())
    model = str(body.get("model", "gpt-4o-mini"))
    if not body.get("stream"):
        return web.Response(body=completion(model), content_type="application/json")
    with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    for event in stream_events(model, with_usage):
        await response.write(event)
    await response.write_eof()
    return response


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def build_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="A lean fake OpenAI provider.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(build_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
