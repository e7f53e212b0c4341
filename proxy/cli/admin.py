"""`cycles-proxy admin …`: drives the admin API. Tables by default, `--json` for scripts.

The URL comes from `--url` or CYCLES_ADMIN_URL (default http://127.0.0.1:8081), the token from
`--token` or CYCLES_ADMIN_TOKEN (the first, when two are set for rotation).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from proxy.store.api_keys.records import PINNABLE

DEFAULT_URL = "http://127.0.0.1:8081"


def add_parser(commands: Any) -> None:
    admin = commands.add_parser("admin", help="operate tenants, keys and balances")
    admin.add_argument("--url", default=os.environ.get("CYCLES_ADMIN_URL", DEFAULT_URL))
    admin.add_argument("--token", default=None, help="default: $CYCLES_ADMIN_TOKEN")
    admin.add_argument("--json", action="store_true", help="print the API's JSON")
    sub = admin.add_subparsers(dest="admin_command", required=True)
    _tenant_commands(sub)
    _key_commands(sub)
    _balance_commands(sub)


def _tenant_commands(sub: Any) -> None:
    """`admin tenants create|list|get|suspend|reactivate|close|update`."""
    tenants = sub.add_parser("tenants").add_subparsers(dest="action", required=True)
    create = tenants.add_parser("create")
    create.add_argument("tenant")
    create.add_argument("--plan", required=True)
    create.add_argument("--mode", choices=["enforce", "shadow"])
    create.add_argument("--anchor-day", type=int)
    create.add_argument("--timezone")
    tenants.add_parser("list").add_argument("--after")
    for action in ("get", "suspend", "reactivate", "close"):
        parser = tenants.add_parser(action)
        parser.add_argument("tenant")
        parser.add_argument("--reason", default="")
    update = tenants.add_parser("update")
    update.add_argument("tenant")
    update.add_argument("--plan")
    update.add_argument("--mode", choices=["enforce", "shadow", "inherit"])
    update.add_argument("--anchor-day", type=int)
    update.add_argument("--timezone")
    update.add_argument("--reason", default="")


def _key_commands(sub: Any) -> None:
    """`admin keys create|list|revoke|rotate`."""
    keys = sub.add_parser("keys").add_subparsers(dest="action", required=True)
    key_create = keys.add_parser("create")
    key_create.add_argument("tenant")
    for level in PINNABLE:
        key_create.add_argument(f"--{level}", help=f"pin the key's calls to this {level}")
    keys.add_parser("list").add_argument("tenant")
    for action in ("revoke", "rotate"):
        parser = keys.add_parser(action)
        parser.add_argument("tenant")
        parser.add_argument("key")
    keys.choices["rotate"].add_argument("--grace", type=int, default=3600, help="seconds")


def _balance_commands(sub: Any) -> None:
    """`admin balances|credit|reset|audit`."""
    sub.add_parser("balances").add_argument("tenant")
    credit = sub.add_parser("credit", help="credit (or, with a negative amount, debit) a budget")
    credit.add_argument("tenant")
    credit.add_argument("--level", default="tenant")
    credit.add_argument("--value")
    credit.add_argument("--amount", required=True, help="decimal, e.g. 25 or -2.50")
    credit.add_argument("--reason", required=True)
    reset = sub.add_parser("reset", help="zero this period's spend (RESET_SPENT)")
    reset.add_argument("tenant")
    reset.add_argument("--level")
    reset.add_argument("--value")
    reset.add_argument("--reason", required=True)
    users = sub.add_parser("users", help="a tenant's top end users by spend, or one user's lines")
    users.add_argument("tenant")
    users.add_argument("--user", help="the end user's id, as its clients send it")
    users.add_argument("--limit", type=int, default=20, help="how many top spenders")
    audit = sub.add_parser("audit")
    audit.add_argument("tenant")
    audit.add_argument("--run")
    audit.add_argument("--decision")
    audit.add_argument("--since", type=int, help="ms since the epoch")
    audit.add_argument("--until", type=int)
    audit.add_argument("--limit", type=int, default=100)


def request_for(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    """(method, path, JSON body) for a parsed command."""
    t = f"/admin/v1/tenants/{getattr(args, 'tenant', '')}"
    command, action = args.admin_command, getattr(args, "action", None)
    given = {k: v for k, v in vars(args).items() if v is not None}
    if command == "tenants":
        if action == "create":
            body = {"id": args.tenant, "plan": args.plan}
            body |= {k: given[a] for k, a in _OPTIONAL.items() if a in given}
            return "POST", "/admin/v1/tenants", body
        if action == "list":
            return "GET", "/admin/v1/tenants" + (f"?after={args.after}" if args.after else ""), None
        if action == "get":
            return "GET", t, None
        if action == "update":
            body = {k: given[a] for k, a in {**_OPTIONAL, "plan": "plan"}.items() if a in given}
            return "PATCH", t, body | {"reason": args.reason}
        return "POST", f"{t}/{action}", {"reason": args.reason}
    if command == "keys":
        if action == "create":
            return "POST", f"{t}/keys", {k: given[k] for k in PINNABLE if k in given}
        if action == "list":
            return "GET", f"{t}/keys", None
        body = {"grace_seconds": args.grace} if action == "rotate" else {}
        return "POST", f"{t}/keys/{args.key}/{action}", body
    if command == "balances":
        return "GET", f"{t}/balances", None
    if command == "users":
        one = f"/users/{quote(args.user, safe='')}" if args.user else f"/users?limit={args.limit}"
        return "GET", t + one, None
    if command == "credit":
        body = {"level": args.level, "amount": args.amount, "reason": args.reason}
        return "POST", f"{t}/adjustments", body | ({"value": args.value} if args.value else {})
    if command == "reset":
        body = {"reason": args.reason} | {k: given[k] for k in ("level", "value") if k in given}
        return "POST", f"{t}/reset", body
    query = "&".join(
        f"{name}={given[name]}"
        for name in ("run", "decision", "since", "until", "limit")
        if name in given
    )
    return "GET", f"{t}/audit?{query}", None


_OPTIONAL = {"mode": "mode", "anchor_day": "anchor_day", "timezone": "timezone"}


async def call(
    url: str, token: str, method: str, path: str, body: dict[str, Any] | None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    if method != "GET":
        headers["Idempotency-Key"] = uuid.uuid4().hex
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url.rstrip("/") + path, json=body, headers=headers) as response,
    ):
        raw = await response.read()
        return response.status, orjson.loads(raw) if raw else None


def run(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("CYCLES_ADMIN_TOKEN", "").split(",")[0].strip()
    method, path, body = request_for(args)
    try:
        status, answer = asyncio.run(call(args.url, token, method, path, body))
    except aiohttp.ClientError as exc:
        print(f"cycles-proxy admin: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 2
    if status >= 400:
        error = (answer or {}).get("error", {})
        print(f"cycles-proxy admin: {status}: {error.get('message', answer)}", file=sys.stderr)
        return 1
    print(
        orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode() if args.json else render(answer)
    )
    return 0


def render(answer: Any) -> str:
    """A readable table of the API's JSON."""
    if isinstance(answer, dict) and "data" in answer:
        return table(answer["data"])
    if isinstance(answer, dict) and "tenant" in answer and "api_key" in answer:
        return table([answer["tenant"]]) + _shown(answer["api_key"])
    if isinstance(answer, dict) and "key" in answer:
        hidden = ("key", "shown_once", "message")
        return table([{k: v for k, v in answer.items() if k not in hidden}]) + _shown(answer)
    return table([answer] if isinstance(answer, dict) else [])


def _shown(key: dict[str, Any]) -> str:
    """The new key, or, in a replayed answer (which never holds it), why not."""
    if key.get("key") is None:
        return f"\n\n{key.get('message', 'The API key was shown once and is not stored.')}"
    return f"\n\nAPI key (shown once): {key['key']}"


def table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    columns = list(rows[0])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if isinstance(value, dict) and "text" in value:
        return str(value["text"])
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    return "-" if value is None else str(value)
