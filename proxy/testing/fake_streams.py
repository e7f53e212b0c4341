"""How the fake provider writes a stream: chat and completions chunks (OpenAI's `data:` lines,
with the usage chunk and `[DONE]` when asked), and the typed events of the Responses and Messages
APIs (fake_shapes.py); each cut short when the settings say (`cut_after`, `stream_error`), and
paced by `chunk_delay`. The fake writes on whether or not anyone is still listening.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from proxy.testing import fake_openai, fake_shapes
from proxy.testing.fake_bills import reported
from proxy.testing.fake_openai import WORD, Billed
from proxy.testing.fake_settings import FakeSettings


async def openai_stream(
    request: web.Request,
    settings: FakeSettings,
    endpoint: str,
    body: dict[str, Any],
    billed: Billed,
    per_choice: int,
    n: int,
) -> web.StreamResponse:
    """A chat or completions stream of `n` choices of `per_choice` tokens each, for a call
    already `billed`: the text chunks, then (when asked, and the fake sends it) the usage chunk
    and `[DONE]`; cut short with `cut_after` (and `stream_error` written)."""
    model = body["model"]
    usage_asked = bool((body.get("stream_options") or {}).get("include_usage"))
    with_usage = usage_asked and settings.send_usage
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    chunks = max(1, min(settings.chunks, per_choice or 1))
    try:
        await response.prepare(request)
        texts = (endpoint, model, billed, per_choice, n, chunks, with_usage)
        if not await _chunks(response, settings, *texts):
            if settings.stream_error is not None:
                await response.write(fake_openai.event({"error": settings.stream_error}))
            await response.write_eof()
            return response
        if with_usage:
            final = fake_openai.chunk(endpoint, model, 0, "", False)
            final["choices"] = []
            final["usage"] = fake_openai.usage(reported(settings, billed))
            if endpoint == "chat":
                final["service_tier"] = billed.service_tier
            await response.write(fake_openai.event(final))
        if settings.send_done:
            await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
    except ConnectionError:
        pass
    return response


async def _chunks(
    response: web.StreamResponse,
    settings: FakeSettings,
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
            if settings.cut_after is not None and written >= settings.cut_after:
                return False
            chunk = fake_openai.chunk(endpoint, model, index, WORD * tokens, i == chunks - 1)
            if endpoint == "chat":
                chunk["service_tier"] = billed.service_tier
            if with_usage:
                chunk["usage"] = None
            if settings.continuous_usage:
                so_far += tokens
                last = i == chunks - 1 and index == n - 1
                total = billed.completion_tokens if last else so_far
                chunk["usage"] = fake_openai.usage(
                    dataclasses.replace(billed, completion_tokens=total)
                )
            await response.write(fake_openai.event(chunk))
            written += 1
        if settings.chunk_delay:
            await asyncio.sleep(settings.chunk_delay)
    return True


async def shaped_stream(
    request: web.Request,
    settings: FakeSettings,
    events: Iterator[fake_shapes.Event],
    endpoint: str,
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
                if settings.cut_after is not None and deltas > settings.cut_after:
                    await _stream_error(response, settings, endpoint)
                    break
                if settings.chunk_delay:
                    await asyncio.sleep(settings.chunk_delay)
            await response.write(event)
        await response.write_eof()
    except ConnectionError:
        pass
    return response


async def _stream_error(
    response: web.StreamResponse, settings: FakeSettings, endpoint: str
) -> None:
    error = settings.stream_error
    if error is None:
        return
    if endpoint == "messages":
        await response.write(fake_shapes.sse("error", {"type": "error", "error": error})[1])
    else:
        await response.write(fake_shapes.sse("error", {"type": "error", **error})[1])
