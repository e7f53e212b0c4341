"""Ledger round trips per budgeted call, counted with Redis MONITOR.

`INFO commandstats` counts the commands a Lua script runs as well as the client's own, so it
cannot tell one EVALSHA from the twenty HGETs inside it. MONITOR can: lines from scripts are
marked `[0 lua]`. While a fixed number of calls runs, every client command is collected and
named (an EVALSHA by the script its SHA belongs to). The heartbeat and the sweeper run every
5 s whatever the traffic; their commands are counted apart as background.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from proxy.store.ledger.scripts import SCRIPTS
from proxy.store.redis import layout

BACKGROUND_KEYS = frozenset({layout.INSTANCES, layout.TENANTS, layout.EPOCH})
BACKGROUND_SCRIPTS = frozenset({"evalsha sweep"})
_ARGUMENT = re.compile(r'"((?:[^"\\]|\\.)*)"')


def script_names() -> dict[str, str]:
    """SHA → script name, computed as the Redis ledger computes them."""
    lua = resources.files("proxy.store.ledger").joinpath("lua")
    names = {}
    for name, parts in SCRIPTS.items():
        source = "".join(lua.joinpath(f"{part}.lua").read_text() for part in parts)
        names[hashlib.sha1(source.encode()).hexdigest()] = name
    return names


@asynccontextmanager
async def monitor(redis_url: str) -> AsyncIterator[list[str]]:
    """The client commands Redis runs while the block runs, as MONITOR lines."""
    host, port = redis_url.removeprefix("redis://").split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"MONITOR\r\n")
    if await reader.readline() != b"+OK\r\n":
        raise RuntimeError("redis refused MONITOR")
    lines: list[str] = []

    async def collect() -> None:
        while line := await reader.readline():
            text = line.decode(errors="replace")
            if "[0 lua]" not in text and " lua] " not in text:
                lines.append(text)

    task = asyncio.ensure_future(collect())
    try:
        yield lines
        await asyncio.sleep(0.3)  # MONITOR lines arrive after the commands ran
    finally:
        task.cancel()
        writer.close()
        await writer.wait_closed()


def classify(lines: list[str]) -> tuple[Counter[str], Counter[str]]:
    """(per-call commands, background commands), by name: `evalsha reserve`, `hgetall`, ..."""
    shas = script_names()
    calls: Counter[str] = Counter()
    background: Counter[str] = Counter()
    for line in lines:
        words = _ARGUMENT.findall(line)
        if not words:
            continue
        command = words[0].lower()
        if command in ("evalsha", "eval"):
            command = f"evalsha {shas.get(words[1], words[1][:8])}"
        touched = set(words[1:])
        if command == "time" or command in BACKGROUND_SCRIPTS or touched & BACKGROUND_KEYS:
            background[command] += 1
        else:
            calls[command] += 1
    return calls, background
