"""`cycles-proxy report`: limit reports read straight from the store (README "Reports").

It reads only: no proxy needs to run, and nothing in the store changes. Without `--tenant` it
reports every tenant, a page of the tenant store at a time. A tenant whose record inherits its
mode is reported in the policy's mode when `--policy` is given, else as `inherit`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson

from proxy.core.types import ReservationSettings
from proxy.policy import load_policy
from proxy.reports.figures import TenantReport
from proxy.reports.read import read_reports, window_days
from proxy.reports.render import report_json, to_csv, to_table
from proxy.store.open import Stores, open_store


def add_parser(commands: Any) -> None:
    report = commands.add_parser(
        "report", help="limits against their history: spend, denials, a recommended limit"
    )
    report.add_argument(
        "--store", help="redis://host:port/db or redis+cluster://host:port; env CYCLES_STORE"
    )
    report.add_argument("--tenant", help="one tenant (default: every tenant)")
    report.add_argument("--since", default="30d", help="the window, in days (default %(default)s)")
    report.add_argument("--format", choices=["table", "csv", "json"], default="table")
    report.add_argument("--policy", help="policy file or directory: the mode tenants inherit")


async def _reports(
    stores: Stores, args: argparse.Namespace, days: int, mode: str
) -> AsyncIterator[TenantReport]:
    only = args.tenant.lower() if args.tenant else None
    after: str | None = None
    while True:
        page, after = await read_reports(
            stores.ledger, stores.tenants, days=days, default_mode=mode, only=only, after=after
        )
        for report in page:
            yield report
        if after is None:
            return


async def _collect(stores: Stores, args: argparse.Namespace) -> list[TenantReport]:
    days = window_days(args.since)
    mode = load_policy(args.policy).mode if args.policy else "inherit"
    try:
        return [r async for r in _reports(stores, args, days, mode)]
    finally:
        await stores.close()


def render(reports: list[TenantReport], form: str) -> str:
    if form == "json":
        data = {"data": [report_json(r) for r in reports]}
        return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
    if form == "csv":
        return to_csv(reports).rstrip("\n")
    return to_table(reports)


def run(args: argparse.Namespace) -> int:
    url = args.store or os.environ.get("CYCLES_STORE")
    if not url:
        print("cycles-proxy report: name the store: --store URL (or CYCLES_STORE)", file=sys.stderr)
        return 2
    window_days(args.since)  # a bad window is refused before the store is opened
    try:
        stores = open_store(url, ReservationSettings())
    except ValueError as exc:
        print(f"cycles-proxy report: {exc}", file=sys.stderr)
        return 2
    reports = asyncio.run(_collect(stores, args))
    if args.tenant and not reports:
        print(f"cycles-proxy report: no tenant {args.tenant!r} in the store", file=sys.stderr)
        return 1
    print(render(reports, args.format))
    return 0
