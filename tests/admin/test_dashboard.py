"""The dashboard on the admin listener: login, sessions and the bearer-only API, the security
headers, escaping, figures that match the ledger, and the pages in a real (headless) Chromium."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from support import chat, policy

from proxy.admin.app import build_admin_app
from proxy.admin.auth import Tokens
from proxy.admin.dashboard import session
from proxy.admin.dashboard.markup import esc, render
from proxy.admin.dashboard.scan import Scan, history
from proxy.app import shared
from proxy.store.ledger.base import Ledger
from proxy.store.tenants import AuditEntry
from proxy.testing.local import Stack, local_stack, serving

ADMIN, READER = "admin-token-1", "read-token-1"
CHROMIUM = Path("/usr/bin/chromium")
PAYLOAD = """<script>window.__xss=1</script>"><img src=x onerror="window.__xss=2">"""
BUDGETS = """
tenant: {limit: 50, period: month}
workflow: {limit: 0.00001, period: month}
"""
PLAN = """
quotas:
  models: ["gpt-4o-mini"]
degrade:
  - {when: {model_not_allowed: true}, set: {model: gpt-4o-mini}}
action_budgets:
  tenant: {limit: 500, period: month}
"""
CSP = (
    "default-src 'none'; style-src 'nonce-{n}'; script-src 'nonce-{n}'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass
class Dash:
    url: str
    stack: Stack
    session: aiohttp.ClientSession

    async def api(self, method: str, path: str, body: Any = None, token: str = ADMIN) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        async with self.session.request(method, self.url + path, json=body, headers=headers) as r:
            assert r.status in (200, 201), await r.text()
            return await r.json()

    async def proxy(self, body: dict[str, Any], **headers: str) -> int:
        scope = {"X-Cycles-" + k.capitalize(): v for k, v in headers.items()}
        url = self.stack.url + "/v1/chat/completions"
        async with self.session.post(url, json=body, headers=scope) as r:
            await r.read()
            return r.status

    async def action(self, tenant: str, amount: int, commit: bool) -> None:
        url = self.stack.url + "/v1/cycles/reservations"
        headers = {"X-Cycles-Tenant": tenant}
        body = {"unit": "RISK_POINTS", "amount": amount}
        async with self.session.post(url, json=body, headers=headers) as r:
            assert r.status == 201, await r.text()
            held = await r.json()
        if commit:
            async with self.session.post(f"{url}/{held['id']}/commit", headers=headers) as r:
                assert r.status == 200, await r.text()

    async def login(self, token: str = ADMIN) -> str:
        """The session cookie's value."""
        async with self.post("/dashboard/login", {"token": token}) as r:
            assert r.status == 303, await r.text()
            return r.cookies[session.COOKIE].value

    def post(
        self, path: str, form: Mapping[str, str], origin: str | None = "own", **headers: str
    ) -> Any:
        sent = dict(headers)
        if origin is not None:
            sent["Origin"] = self.url if origin == "own" else origin
        return self.session.post(self.url + path, data=form, headers=sent, allow_redirects=False)

    async def page(self, path: str, cookie: str | None) -> tuple[int, str, Mapping[str, str]]:
        headers = {"Cookie": f"{session.COOKIE}={cookie}"} if cookie else {}
        async with self.session.get(self.url + path, headers=headers, allow_redirects=False) as r:
            return r.status, await r.text(), r.headers


@asynccontextmanager
async def dashboard(tmp_path: Path, store: str) -> AsyncIterator[Dash]:
    pol = policy(tmp_path, BUDGETS, plan=PLAN)
    async with local_stack(pol, store=store) as stack:
        admin_app = build_admin_app(shared(stack.app), tokens=Tokens((ADMIN,), (READER,)))
        async with serving(admin_app) as url, aiohttp.ClientSession() as client:
            yield Dash(url, stack, client)


async def seed(dash: Dash) -> None:
    """Spend, a degradation, two denials, actions (one committed, one open) for alpha; a call
    for beta; a shadow denial for gamma; and markup in a reason typed into the admin API."""
    for _ in range(3):
        assert await dash.proxy(chat(), tenant="alpha") == 200
    assert await dash.proxy(chat(model="gpt-4o"), tenant="alpha") == 200  # degraded
    for _ in range(2):
        assert await dash.proxy(chat(), tenant="alpha", workflow="big") == 402
    await dash.action("alpha", 30, commit=True)
    await dash.action("alpha", 20, commit=False)
    assert await dash.proxy(chat(), tenant="beta") == 200
    assert await dash.proxy(chat(), tenant="gamma", workflow="big") == 200  # shadow
    adjustment = {"level": "tenant", "amount": "1", "reason": PAYLOAD}
    await dash.api("POST", "/admin/v1/tenants/alpha/adjustments", adjustment)


async def spent(ledger: Ledger, tenant: str, unit: str = "USD") -> tuple[int, int]:
    [row] = [r for r in await ledger.balances(tenant) if r.level == "tenant" and r.unit == unit]
    return row.spent, row.reserved


def dollars(units: int) -> str:
    """How the dashboard shows a non-negative USD amount: six decimals, rounded down."""
    whole, micro = divmod(units // 100, 10**6)
    return f"{whole}.{micro:06d} USD"


def cell(markup: str, row_attr: str, key: str) -> str:
    """The text of `data-key`/`data-role` `key` in the row whose opening tag has `row_attr`."""
    row = markup.split(row_attr, 1)[1].split("</tr>", 1)[0]
    found = re.search(rf'data-(?:key|role)="{key}"[^>]*>(.*?)</(?:td|span)>', row, re.S)
    assert found, (key, row)
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


# --- login, sessions, origins, headers --------------------------------------------------------


async def test_login_sets_a_strict_http_only_session_cookie(tmp_path: Path) -> None:
    async with dashboard(tmp_path, "memory://") as dash:
        status, _, headers = await dash.page("/dashboard", None)
        assert (status, headers["Location"]) == (303, "/dashboard/login")
        status, text, _ = await dash.page("/dashboard/login", None)
        assert status == 200 and 'name="token"' in text
        async with dash.post("/dashboard/login", {"token": ADMIN}) as r:
            assert (r.status, r.headers["Location"]) == (303, "/dashboard")
            attributes = r.headers["Set-Cookie"].lower()
        assert "httponly" in attributes and "samesite=strict" in attributes
        assert "path=/dashboard" in attributes and "secure" not in attributes  # plain http
        cookie = await dash.login()
        assert ADMIN not in cookie
        status, text, _ = await dash.page("/dashboard", cookie)
        assert status == 200 and 'data-tenant="alpha"' in text and ">admin<" in text
        status, text, _ = await dash.page("/dashboard", await dash.login(READER))
        assert status == 200 and "read-only" in text
        async with dash.post("/dashboard/login", {"token": "wrong"}) as r:
            assert r.status == 401 and "Set-Cookie" not in r.headers
            assert "not an admin token" in await r.text()
        async with dash.post("/dashboard/logout", {}) as r:
            assert (r.status, r.headers["Location"]) == (303, "/dashboard/login")
            assert r.cookies[session.COOKIE].value == ""
            assert r.cookies[session.COOKIE]["max-age"] == "0"


async def test_cross_origin_and_originless_posts_are_refused(tmp_path: Path) -> None:
    async with dashboard(tmp_path, "memory://") as dash:
        for origin, extra in [
            ("https://evil.example", {}),
            ("http://evil.example", {"Sec-Fetch-Site": "same-origin"}),  # Origin decides
            (None, {}),
            ("null", {}),
            ("null", {"Sec-Fetch-Site": "cross-site"}),
        ]:
            for path in ("/dashboard/login", "/dashboard/logout"):
                async with dash.post(path, {"token": ADMIN}, origin, **extra) as r:
                    assert r.status == 403, (path, origin, extra)
                    assert "Set-Cookie" not in r.headers
        async with dash.post("/dashboard/login", {"token": ADMIN}, "null") as r:
            assert "open the dashboard over https" in await r.text()
        # What Chromium sends for a form posted from a page with Referrer-Policy: no-referrer.
        async with dash.post(
            "/dashboard/login", {"token": ADMIN}, "null", **{"Sec-Fetch-Site": "same-origin"}
        ) as r:
            assert r.status == 303 and session.COOKIE in r.cookies


async def test_the_session_cookie_never_opens_the_json_api(tmp_path: Path) -> None:
    async with dashboard(tmp_path, "memory://") as dash:
        cookie = await dash.login()
        cookies = {"Cookie": f"{session.COOKIE}={cookie}"}
        for method, path in [
            ("GET", "/admin/v1/tenants"),
            ("GET", "/admin/v1/tenants/alpha/balances"),
            ("POST", "/admin/v1/tenants/alpha/suspend"),
        ]:
            async with dash.session.request(
                method, dash.url + path, headers={**cookies, "Origin": dash.url}, json={}
            ) as r:
                assert r.status == 401, (method, path)
        assert (await dash.api("GET", "/admin/v1/tenants/alpha"))["status"] == "active"
        # and the bearer token does not open a dashboard page
        async with dash.session.get(
            dash.url + "/dashboard",
            headers={"Authorization": f"Bearer {ADMIN}"},
            allow_redirects=False,
        ) as r:
            assert (r.status, r.headers["Location"]) == (303, "/dashboard/login")


async def test_forged_expired_and_foreign_cookies_are_refused(tmp_path: Path) -> None:
    now = [1_000_000.0]
    sessions = session.Sessions(Tokens((ADMIN,), (READER,)), lifetime_s=60, clock=lambda: now[0])
    cookie = sessions.issue(ADMIN)
    assert cookie is not None and sessions.verify(cookie) == session.Session("admin", 1_000_060_000)
    read = sessions.issue(READER)
    assert read is not None and sessions.verify(read) is not None
    assert sessions.verify(read.replace(".read.", ".admin.", 1)) is None  # no promotion
    parts = cookie.split(".")
    longer = ".".join([*parts[:3], str(int(parts[3]) + 10**9), *parts[4:]])
    assert sessions.verify(longer) is None
    assert sessions.verify(cookie[:-2] + ("AA" if cookie[-2:] != "AA" else "BB")) is None
    assert sessions.verify("v1.admin.x.y.z.w") is None and sessions.verify("") is None
    rotated = session.Sessions(Tokens(("another-token",), (READER,)), clock=lambda: now[0])
    assert rotated.verify(cookie) is None  # its token is no longer configured
    both = session.Sessions(Tokens(("another-token", ADMIN), ()), clock=lambda: now[0])
    assert both.verify(cookie) is not None  # still valid while rotating
    assert sessions.issue("wrong") is None and sessions.issue("") is None
    now[0] += 61
    assert sessions.verify(cookie) is None

    async with dashboard(tmp_path, "memory://") as dash:
        good = await dash.login()
        status, _, headers = await dash.page("/dashboard", good[:-3] + "xyz")
        assert (status, headers["Location"]) == (303, "/dashboard/login")
        assert (await dash.page("/dashboard", good))[0] == 200


def test_the_cookie_is_secure_when_the_request_came_over_tls() -> None:
    for tls, secure in ((True, True), (False, False)):
        request = make_mocked_request(
            "POST", "/dashboard/login", sslcontext=object() if tls else None
        )
        response = aiohttp.web.Response()
        session.set_cookie(response, request, "value", 60)
        attributes = response.cookies[session.COOKIE].OutputString()
        assert ("Secure" in attributes) is secure and "HttpOnly" in attributes


async def test_failed_logins_are_throttled_per_address(tmp_path: Path) -> None:
    async with dashboard(tmp_path, "memory://") as dash:
        for _ in range(10):
            async with dash.post("/dashboard/login", {"token": "guess"}) as r:
                assert r.status == 401
        async with dash.post("/dashboard/login", {"token": ADMIN}) as r:
            assert r.status == 429 and "Set-Cookie" not in r.headers


async def test_every_dashboard_response_carries_the_security_headers(tmp_path: Path) -> None:
    async with dashboard(tmp_path, "memory://") as dash:
        cookie = await dash.login()
        for path, who in [
            ("/dashboard/login", None),
            ("/dashboard", None),
            ("/dashboard", cookie),
            ("/dashboard/tenants/alpha", cookie),
            ("/dashboard/tenants/nobody", cookie),
            ("/dashboard/nothing-here", cookie),
        ]:
            status, text, headers = await dash.page(path, who)
            nonce = re.search(r"'nonce-([A-Za-z0-9_-]+)'", headers["Content-Security-Policy"])
            assert nonce, headers
            assert headers["Content-Security-Policy"] == CSP.format(n=nonce.group(1))
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert headers["Referrer-Policy"] == "no-referrer"
            assert headers["Cache-Control"] == "no-store"
            if status != 303:
                assert headers["Content-Type"].startswith("text/html")
                assert text.count(f'nonce="{nonce.group(1)}"') == 2  # the style and the script
                assert not re.search(r"<[^>]+\s(style|on[a-z]+)\s*=", text)  # blocked by CSP
        assert (await dash.page("/dashboard/tenants/nobody", cookie))[0] == 404
        first = (await dash.page("/dashboard", cookie))[2]["Content-Security-Policy"]
        second = (await dash.page("/dashboard", cookie))[2]["Content-Security-Policy"]
        assert first != second  # a nonce per response


# --- escaping and figures ---------------------------------------------------------------------


def test_values_are_escaped_and_only_markup_built_here_is_not() -> None:
    shown = render('<td>{v}</td><a title="{v}">', v=PAYLOAD)
    assert "<script>" not in shown and "<img" not in shown and '"><' not in shown
    assert "&lt;script&gt;" in shown and "&quot;&gt;&lt;img" in shown
    assert esc(esc("<b>")) == "&lt;b&gt;"  # escaped once, not twice
    assert render("{v}", v=render("<b>{x}</b>", x="&")) == "<b>&amp;</b>"


async def test_figures_match_the_ledger_and_client_text_is_escaped(
    tmp_path: Path, store_url: str
) -> None:
    async with dashboard(tmp_path, store_url) as dash:
        await seed(dash)
        cookie = await dash.login()
        _, table, _ = await dash.page("/dashboard", cookie)
        usd, _ = await spent(dash.stack.ledger, "alpha")
        assert cell(table, 'data-tenant="alpha"', "spent") == dollars(usd)
        assert cell(table, 'data-tenant="alpha"', "denials") == "2"
        assert cell(table, 'data-tenant="alpha"', "degradations") == "1"
        assert cell(table, 'data-tenant="beta"', "denials") == "0"
        assert cell(table, 'data-tenant="gamma"', "denials") == "0 (+1 shadow)"
        assert "30 RISK_POINTS of 500 RISK_POINTS" in table

        _, page, _ = await dash.page("/dashboard/tenants/alpha", cookie)
        assert PAYLOAD not in page and "<img src=x" not in page
        assert esc(PAYLOAD) in page  # shown, as text
        [month] = re.findall(r'data-line="tenant\|alpha\|USD\|(m\d{8})"', page)
        line = f'data-line="tenant|alpha|USD|{month}"'
        assert cell(page, line, "spent") == dollars(usd)
        assert cell(page, line, "limit") == "50.000000 USD"
        assert cell(page, line, "remaining") == dollars(51 * 10**8 - usd)
        risk = f'data-line="tenant|alpha|RISK_POINTS|{month}"'
        assert (cell(page, risk, "spent"), cell(page, risk, "reserved")) == (
            "30 RISK_POINTS",
            "20 RISK_POINTS",
        )
        assert cell(page, risk, "remaining") == "450 RISK_POINTS"
        denials = page.split('data-table="denials"', 1)[1].split("</table>", 1)[0]
        assert "workflow|big" in denials and 'data-role="count">2<' in denials
        degradations = page.split('data-table="degradations"', 1)[1].split("</table>", 1)[0]
        assert "degrade[0]" in degradations and "model → gpt-4o-mini" in degradations
        assert page.count('<svg class="chart"') == 4  # USD and RISK_POINTS, per day and month
        today = re.findall(r'class="col (\w+)"[^>]*data-amount="(\d*)"', page)
        assert ("ledger", str(usd)) in today  # the month column is the ledger's line


async def test_search_and_pages_go_by_tenant_id(tmp_path: Path) -> None:
    async with dashboard(tmp_path, "memory://") as dash:
        for name in ("acme-1", "acme-2", "acme-3", "zeta"):
            await dash.api("POST", "/admin/v1/tenants", {"id": name, "plan": "test"})
        cookie = await dash.login()
        _, first, _ = await dash.page("/dashboard?limit=2", cookie)
        assert re.findall(r'data-tenant="([^"]+)"', first) == ["acme-1", "acme-2"]
        cursor = re.search(r'href="([^"]+)" rel="next"', first)
        assert cursor
        _, second, _ = await dash.page(cursor.group(1).replace("&amp;", "&"), cookie)
        assert re.findall(r'data-tenant="([^"]+)"', second) == ["acme-3", "alpha"]
        _, found, _ = await dash.page("/dashboard?q=ACME&sort=id&dir=desc", cookie)
        assert re.findall(r'data-tenant="([^"]+)"', found) == ["acme-3", "acme-2", "acme-1"]
        _, hostile, _ = await dash.page("/dashboard?q=%3Cscript%3E&sort=%22%3E", cookie)
        assert "<script>alert" not in hostile and 'value="&lt;script&gt;"' in hostile


# --- the audit scan ---------------------------------------------------------------------------


class Trail:
    """A tenant store's `audit` over a list of entries, counting what it hands out."""

    def __init__(self, times: list[int]) -> None:
        self.entries = [
            AuditEntry(f"{t}-{i}", t, "commit", {"charged": "USD=1"}) for i, t in enumerate(times)
        ]
        self.handed = 0

    async def audit(
        self,
        tenant: str,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 1000,
        **_: Any,
    ) -> list[AuditEntry]:
        low, high = since_ms or 0, until_ms if until_ms is not None else 2**63
        out = [e for e in self.entries if low <= e.at_ms <= high][:limit]
        self.handed += len(out)
        return out


async def test_the_scan_reads_newest_first_and_within_its_budget() -> None:
    now = 10**12
    # A quiet month, then a burst of 5000 entries in the last ten seconds.
    times = [now - d * 3_600_000 for d in range(700, 0, -1)]
    times += [now - 10_000 + i * 2 for i in range(5000)]
    trail = Trail(times)
    scan = Scan(trail, "t", now_ms=now, floor_ms=now - 40 * 86_400_000, page=500)  # type: ignore[arg-type]
    found = await history(scan, 0)
    assert scan.complete and len(found.tail) == 50
    assert [e.at_ms for e in found.tail] == sorted(times, reverse=True)[:50]
    assert sum(found.daily.values()) == len(times)
    assert trail.handed < 3 * len(times)

    trail = Trail(times)
    scan = Scan(trail, "t", now_ms=now, floor_ms=0, budget=2000, page=500)  # type: ignore[arg-type]
    found = await history(scan, 0)
    assert not scan.complete and trail.handed <= 2000 + 500
    newest = sorted(times, reverse=True)
    assert [e.at_ms for e in found.tail] == newest[:50]
    assert found.reached_ms > now - 10_000  # stopped inside the burst, and says so


# --- in a browser -----------------------------------------------------------------------------


def need_chromium() -> None:
    """The browser test fails, never skips, without a browser: CI installs it."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium); "
            ".ci/run installs it"
        )


async def test_the_dashboard_in_headless_chromium(tmp_path: Path, redis_url: str) -> None:
    need_chromium()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[test]'")
    async with dashboard(tmp_path, redis_url) as dash, async_playwright() as pw:
        await seed(dash)
        usd, _ = await spent(dash.stack.ledger, "alpha")
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
            ],
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))

            await page.goto(dash.url + "/dashboard")
            assert page.url == dash.url + "/dashboard/login"
            await page.screenshot(path=str(tmp_path / "1-login.png"))
            await page.fill("#token", "not-the-token")
            await page.click("button[type=submit]")
            assert "not an admin token" in await page.inner_text("main")
            problems.clear()  # the console reports that 401
            await page.fill("#token", ADMIN)
            await page.click("main button[type=submit]")
            await page.wait_for_url(dash.url + "/dashboard")

            alpha = page.locator('tr[data-tenant="alpha"]')
            assert await alpha.locator('[data-role="spent"]').inner_text() == dollars(usd)
            assert await alpha.locator('[data-key="denials"]').inner_text() == "2"
            assert await alpha.locator('[data-key="degradations"]').inner_text() == "1"
            await page.screenshot(path=str(tmp_path / "2-tenants.png"), full_page=True)

            # The script sorts in place (spend, highest first) and filters as you type.
            await page.click('th[data-key="spend"] a')
            assert await page.locator("tbody tr").first.get_attribute("data-tenant") == "alpha"
            assert "sort=spend" in page.url
            await page.fill('input[name="q"]', "gam")
            assert await page.locator("tbody tr:visible").count() == 1
            await page.fill('input[name="q"]', "")

            await alpha.locator("a").click()
            await page.wait_for_url(dash.url + "/dashboard/tenants/alpha")
            month = await page.locator('tr[data-line^="tenant|alpha|USD|m"]').get_attribute(
                "data-line"
            )
            line = page.locator(f'tr[data-line="{month}"]')
            assert await line.locator('[data-role="spent"]').inner_text() == dollars(usd)
            risk = page.locator('tr[data-line^="tenant|alpha|RISK_POINTS|m"]')
            assert await risk.locator('[data-role="spent"]').inner_text() == "30 RISK_POINTS"
            assert await risk.locator('[data-role="reserved"]').inner_text() == "20 RISK_POINTS"
            denials = page.locator('table[data-table="denials"]')
            assert "workflow|big" in await denials.inner_text()
            assert await denials.locator('[data-role="count"]').first.inner_text() == "2"
            rule = page.locator('table[data-table="degradations"] [data-role="rule"]')
            assert await rule.first.inner_text() == "degrade[0]"
            assert await page.locator("svg.chart").count() == 4

            # The reason typed into the admin API is shown as text and runs nothing.
            audit = page.locator('table[data-table="audit"]')
            assert PAYLOAD in await audit.inner_text()
            assert await page.evaluate("typeof window.__xss") == "undefined"
            assert await page.locator('img[src="x"]').count() == 0
            await page.screenshot(path=str(tmp_path / "3-tenant.png"), full_page=True)

            await page.click(".account button")
            await page.wait_for_url(dash.url + "/dashboard/login")
            await page.goto(dash.url + "/dashboard")
            assert page.url == dash.url + "/dashboard/login"
            assert problems == []  # no CSP violation, no script error
        finally:
            await browser.close()
    for name in ("1-login.png", "2-tenants.png", "3-tenant.png"):
        assert (tmp_path / name).stat().st_size > 1000
