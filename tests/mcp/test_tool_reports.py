"""Tool calls in the limit reports: a tool budget is read through its unit's line (EMAILS, a
count: whole numbers, never dollars), its calls, denials and recommendation as any line's."""

from __future__ import annotations

import secrets
from pathlib import Path

import aiohttp
from mcp_support import Upstream, client, emails, proxy, sse_upstream

from proxy.admin.app import build_admin_app
from proxy.admin.auth import Tokens
from proxy.app import shared
from proxy.testing.local import serving

__all__ = ["sse_upstream"]

ADMIN = "admin-token-for-the-tool-reports"


async def test_an_emails_line_is_reported_in_emails(tmp_path: Path, sse_upstream: Upstream) -> None:
    to = f"r-{secrets.token_hex(4)}"
    async with proxy(tmp_path, sse_upstream) as stack:
        async with client(stack) as mcp:
            results = [await mcp.call_tool("send_email", {"to": f"{to}-{i}"}) for i in range(11)]
            assert [r.is_error for r in results] == [False] * 10 + [True]
        assert await emails(stack) == (10, 0)
        admin_app = build_admin_app(shared(stack.app), tokens=Tokens((ADMIN,), ()))
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with serving(admin_app) as url, aiohttp.ClientSession(headers=headers) as http:
            async with http.get(url + "/admin/v1/reports/limits?tenant=acme") as answer:
                assert answer.status == 200, await answer.text()
                [report] = (await answer.json())["data"]
            async with http.get(url + "/admin/v1/reports/limits?tenant=acme&format=csv") as answer:
                csv = await answer.text()
    [line] = [x for x in report["lines"] if x["unit"] == "EMAILS"]
    assert (line["level"], line["period"]) == ("tenant", "day")
    assert line["limit"] == {"units": 10, "unit": "EMAILS", "text": "10 EMAILS"}
    assert line["committed"]["text"] == line["spent_this_period"]["text"] == "10 EMAILS"
    assert (line["calls"], line["denials"], line["days_limit_hit"]) == (10, 1, 1)
    recommended = line["recommended_limit"]
    assert isinstance(recommended["units"], int) and recommended["units"] >= 10
    assert recommended["text"] == f"{recommended['units']} EMAILS"
    assert line["forecast"]["text"].endswith(" EMAILS")
    assert "acme,enforce,tenant,acme,EMAILS,day,10 EMAILS,10 EMAILS," in csv
    assert ",10 EMAILS,too-little-history,10 EMAILS" in csv
