"""Limit reports over 30 days of history written by real reserves and commits, on every store
(reports_support: the seeded tenants and their hand-worked answers)."""

from __future__ import annotations

from conftest import EVERY_STORE, Opener
from reports_support import DAYS, check, seed, seeded_days

from proxy.reports.read import read_reports
from proxy.reports.render import report_json


@EVERY_STORE
async def test_every_figure_of_the_seeded_history_equals_the_hand_worked_one(
    opener: Opener,
) -> None:
    stores = opener.open()
    last = await seed(stores)
    reports, cursor = await read_reports(
        stores.ledger, stores.tenants, days=DAYS, default_mode="enforce"
    )
    assert cursor is None
    check([report_json(r) for r in reports], last)


async def test_one_tenant_is_reported_alone(opener: Opener) -> None:
    stores = opener.open()
    last = await seed(stores)
    [quiet], _ = await read_reports(
        stores.ledger, stores.tenants, days=DAYS, default_mode="enforce", only="quiet"
    )
    report = report_json(quiet)
    assert report["shadow"][0].startswith("quiet (shadow): what enforcing today's limits")
    assert (report["since"], report["until"]) == (seeded_days(last)[0].isoformat(), str(last))
    check([report], last, only="quiet")
