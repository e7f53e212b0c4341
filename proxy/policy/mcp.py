"""`mcp_servers:` as written → their runtime form, and the check every policy name of a tool
(`actions:` keys, `quotas.tools`, `hide_tools`) goes through: `mcp:<server>/<tool-or-glob>`,
of a server the policy lists.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from proxy.policy.issues import Issue
from proxy.policy.spec import PolicySpec
from proxy.policy.tools import TOOL_PREFIX, McpServer, split_key

SERVER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
TOOL_PATTERN = re.compile(r"[A-Za-z0-9_.\-/*?]{1,128}")


def compile_servers(spec: PolicySpec, out: list[Issue]) -> dict[str, McpServer]:
    servers: dict[str, McpServer] = {}
    for name, server in spec.mcp_servers.items():
        if not SERVER_NAME.fullmatch(name):
            message = (
                f"MCP server name {name!r} is invalid: use 1 to 64 characters from a-z, 0-9, "
                "'_' and '-', starting with a letter or digit (it is the path /mcp/<name>)"
            )
            out.append(Issue(("mcp_servers", name), message))
        servers[name] = McpServer(
            name,
            server.url,
            server.token_env,
            server.auth,
            server.unpriced_tools,
            server.timeout_seconds * 1000,
        )
    return servers


def tool_glob_problem(glob: str, servers: Mapping[str, object]) -> str | None:
    """What is wrong with a tool name or glob as the policy writes it, or None."""
    example = "e.g. 'mcp:crm/send_email' or 'mcp:crm/*'"
    if not glob.startswith(TOOL_PREFIX) or "/" not in glob:
        return f"{glob!r} does not name MCP tools: write mcp:<server>/<tool or glob>, {example}"
    server, tool = split_key(glob)
    if server not in servers:
        listed = ", ".join(servers) or "none"
        return f"{glob!r} names MCP server {server!r}, which mcp_servers does not list ({listed})"
    if not TOOL_PATTERN.fullmatch(tool):
        return (
            f"{glob!r}: the tool part must be 1 to 128 characters from A-Z, a-z, 0-9, "
            "'_', '.', '-', '/' and the wildcards '*' and '?'"
        )
    return None
