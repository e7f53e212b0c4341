"""Tool calls on the dashboard, in headless chromium: the tenant's EMAILS line as counts, and the
Tool calls table by server and tool (reservations, denials, what their commits charged), read
from the audit trail the page already scans."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from mcp_support import Upstream, client, emails, proxy, sse_upstream

from proxy.admin.app import build_admin_app
from proxy.admin.auth import Tokens
from proxy.app import shared
from proxy.testing.local import serving

__all__ = ["sse_upstream"]

CHROMIUM = Path("/usr/bin/chromium")
ADMIN = "admin-token-for-the-tool-dashboard"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


def need_chromium() -> None:
    """Fails, never skips, without a browser (as tests/admin/test_dashboard.py)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")


async def test_the_tenant_page_shows_tool_calls_by_server_and_tool(
    tmp_path: Path, sse_upstream: Upstream
) -> None:
    need_chromium()
    from playwright.async_api import async_playwright

    to = f"d-{secrets.token_hex(4)}"
    async with proxy(tmp_path, sse_upstream) as stack:
        async with client(stack) as mcp:
            results = [await mcp.call_tool("send_email", {"to": f"{to}-{i}"}) for i in range(11)]
            assert [r.is_error for r in results] == [False] * 10 + [True]
            assert not (await mcp.call_tool("ping", {})).is_error
        assert await emails(stack) == (10, 0)
        admin_app = build_admin_app(shared(stack.app), tokens=Tokens((ADMIN,), ()))
        async with serving(admin_app) as url, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                problems: list[str] = []
                page.on("pageerror", lambda e: problems.append(str(e)))
                await page.goto(url + "/dashboard/login")
                await page.fill("#token", ADMIN)
                await page.click("main button[type=submit]")
                await page.wait_for_url(url + "/dashboard")
                await page.goto(url + "/dashboard/tenants/acme")
                line = page.locator('tr[data-line^="tenant|acme|EMAILS|d"]')
                assert await line.locator('[data-role="limit"]').inner_text() == "10 EMAILS"
                assert await line.locator('[data-role="spent"]').inner_text() == "10 EMAILS"
                assert await line.locator('[data-role="remaining"]').inner_text() == "0 EMAILS"
                tools = page.locator('table[data-table="tools"]')
                email = tools.locator('tr[data-tool="mcp:crm/send_email"]')
                cells = [await c.inner_text() for c in await email.locator("td").all()]
                assert cells == ["crm", "send_email", "10", "1", "10 EMAILS"]
                ping = tools.locator('tr[data-tool="mcp:crm/ping"]')
                cells = [await c.inner_text() for c in await ping.locator("td").all()]
                assert cells == ["crm", "ping", "1", "0", "—"]
                await page.screenshot(path=str(tmp_path / "tools.png"), full_page=True)
                assert problems == []
            finally:
                await browser.close()
    assert (tmp_path / "tools.png").stat().st_size > 1000
