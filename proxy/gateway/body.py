"""Reading a request body under this route's limits: its size, and how long the client
may take to send it (the proxy port, the actions' routes and the admin listener read bodies the
same way).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from proxy.core.errors import PayloadTooLarge, RequestTimeout


async def read_limited(request: web.Request, limit: int, seconds: float) -> bytes:
    """The request body, refusing more than `limit` bytes and a client that takes more than
    `seconds` (the policy's `timeouts.read_request`) to send it."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    data = bytearray()
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.content.iter_any():
                data += chunk
                if len(data) > limit:
                    raise too_large(limit)
    except TimeoutError:
        raise RequestTimeout(f"The request body did not arrive within {seconds:g} s.") from None
    return bytes(data)


def too_large(limit: int) -> PayloadTooLarge:
    """413 for a body over this route's `limit`."""
    return PayloadTooLarge(
        f"The request body is larger than this route's limit of {limit} bytes.",
        code="body_too_large",
    )
