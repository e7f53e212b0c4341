"""The limit report where operators read it: `cycles-proxy report` (a subprocess against the
test Redis), GET /admin/v1/reports/limits, and the dashboard's page in headless Chromium, each
over the seeded history of reports_support with its hand-worked answers."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from reports_support import ADMIN, DAYS, LIMITS, READER, TENANTS, admin, check, expected, get, seed

from proxy.core.types import ReservationSettings
from proxy.store.open import open_store

CHROMIUM = Path("/usr/bin/chromium")


def report(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "proxy", "report", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


async def seeded(url: str) -> Any:
    stores = open_store(url, ReservationSettings())
    try:
        return await seed(stores)
    finally:
        await stores.close()


async def test_the_command_prints_the_report_as_json_csv_and_a_table(redis_url: str) -> None:
    last = await seeded(redis_url)
    done = report("--store", redis_url, "--format", "json", "--since", f"{DAYS}d")
    assert done.returncode == 0, done.stderr
    check(orjson.loads(done.stdout)["data"], last)

    done = report("--store", redis_url, "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = {r["tenant"]: r for r in csv.DictReader(io.StringIO(done.stdout))}
    for tenant, want in expected(last).items():
        row = rows[tenant]
        assert row["recommended_limit"] == want["recommended_limit"]["text"]
        assert row["p95_daily"] == want["daily_spend"]["p95"]["text"]
        assert row["forecast"] == want["forecast"]["text"]
        assert int(row["days_limit_hit"]) == want["days_limit_hit"]
        assert row["mode"] == TENANTS[tenant]

    done = report("--store", redis_url, "--tenant", "quiet")
    assert done.returncode == 0, done.stderr
    assert "would have denied 3 calls on 2 days" in done.stdout
    assert "steady" not in done.stdout


async def test_the_command_refuses_a_bad_window_and_an_unknown_tenant(redis_url: str) -> None:
    await seeded(redis_url)
    done = report("--store", redis_url, "--since", "30 days")
    assert done.returncode == 2 and "'since' is a number of days written like 30d" in done.stderr
    done = report("--store", redis_url, "--tenant", "nobody")
    assert done.returncode == 1 and "no tenant 'nobody'" in done.stderr


async def test_the_admin_route_answers_the_same_report(tmp_path: Path, store_url: str) -> None:
    async with admin(tmp_path, store_url) as (url, stack, client):
        last = await seed(stack.stores)
        status, answer = await get(client, f"{url}{LIMITS}?limit=100")
        assert status == 200, answer
        check([r for r in answer["data"] if r["tenant"] in TENANTS], last)
        status, answer = await get(client, f"{url}{LIMITS}?tenant=spiky&since=30d", ADMIN)
        assert status == 200 and [r["tenant"] for r in answer["data"]] == ["spiky"]
        status, text = await get(client, f"{url}{LIMITS}?format=csv&limit=100")
        rows = [r for r in csv.DictReader(io.StringIO(text)) if r["tenant"] in TENANTS]
        assert status == 200 and sorted(r["tenant"] for r in rows) == sorted(TENANTS)


@pytest.mark.parametrize(
    ("query", "status", "param"),
    [
        ("since=30", 400, "since"),
        ("since=0d", 400, "since"),
        ("since=3661d", 400, "since"),
        ("limit=0", 400, "limit"),
        ("limit=101", 400, "limit"),
        ("format=xml", 400, "format"),
        ("tenant=-", 400, "tenant"),
        ("tenant=nobody", 404, None),
    ],
)
async def test_the_admin_route_refuses_bad_queries_saying_what_was_wrong(
    tmp_path: Path, query: str, status: int, param: str | None
) -> None:
    async with admin(tmp_path, "memory://") as (url, stack, client):
        await seed(stack.stores)
        got, answer = await get(client, f"{url}{LIMITS}?{query}")
        assert got == status, answer
        assert answer["error"]["param"] == param and answer["error"]["message"]
        got, _ = await get(client, f"{url}{LIMITS}", token="wrong")
        assert got == 401


async def test_the_dashboard_shows_the_report_in_headless_chromium(
    tmp_path: Path, redis_url: str
) -> None:
    if not CHROMIUM.exists():  # noqa: ASYNC240 (once, before anything starts)
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"
        )
    from playwright.async_api import async_playwright

    async with admin(tmp_path, redis_url) as (url, stack, _), async_playwright() as pw:
        last = await seed(stack.stores)
        want = expected(last)
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        try:
            page = await browser.new_page(viewport={"width": 1600, "height": 900})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            await page.goto(url + "/dashboard/login")
            await page.fill("#token", READER)
            await page.click("main button[type=submit]")
            await page.wait_for_url(url + "/dashboard")
            await page.click("a.nav")
            await page.wait_for_url(url + "/dashboard/reports")
            for tenant, figures in want.items():
                row = page.locator(f'[data-report="{tenant}"] tr[data-line^="tenant|{tenant}|USD"]')
                for key in ("recommended_limit", "forecast", "limit"):
                    text = await row.locator(f'[data-key="{key}"]').inner_text()
                    assert text == figures[key]["text"], (tenant, key)
                hit = await row.locator('[data-key="days_limit_hit"]').inner_text()
                assert int(hit) == figures["days_limit_hit"]
            shadow = page.locator('[data-report="quiet"] [data-role="shadow"]')
            assert "would have denied 3 calls on 2 days" in await shadow.inner_text()
            assert await page.locator('[data-report="steady"] [data-role="shadow"]').count() == 0
            shot = tmp_path / "reports.png"
            await page.screenshot(path=str(shot), full_page=True)
            await page.goto(url + "/dashboard/reports?tenant=spiky&since=7d")
            assert await page.locator("[data-report]").count() == 1
            assert problems == []
        finally:
            await browser.close()
    assert shot.stat().st_size > 1000
    print(f"dashboard reports page screenshot: {shot}")
