"""Headers across the proxy: what passes is an allow-list, and the upstream's credential is
written its way. The LLM relay (relay.py) and the MCP front (proxy/mcp/upstream.py) each keep
their own lists and use these."""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict


def allowed(pairs: Iterable[tuple[str, str]], names: frozenset[str]) -> CIMultiDict[str]:
    """The headers of `pairs` whose lower-cased name is in `names`, in their order."""
    return CIMultiDict((name, value) for name, value in pairs if name.lower() in names)


def with_credential(headers: CIMultiDict[str], key: str | None, auth: str) -> CIMultiDict[str]:
    """`headers` with `key` written the upstream's way (`auth`: bearer, x-api-key or api-key);
    unchanged without a key."""
    if key:
        if auth == "bearer":
            headers["Authorization"] = f"Bearer {key}"
        else:
            headers[auth] = key
    return headers
