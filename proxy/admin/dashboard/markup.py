"""HTML for the dashboard: escaping, the page frame, its stylesheet and script, its headers.

Every value that reaches a page goes through `esc` (stdlib `html.escape`, quotes included), so
tenant ids, reasons typed into the admin API, rule names and every audit field are text, never
markup. Only `Html` passes unescaped: strings built here from constant templates and escaped
values. A plain `str` joined to `Html` is a plain `str` again and gets escaped (double escaping
shows; it never injects).

The page has no external assets (it must work air-gapped) and one inline `<style>` and
`<script>`, each carrying the response's nonce: the Content-Security-Policy allows nothing else,
so neither inline event handlers nor `style=` attributes are used anywhere.
"""

from __future__ import annotations

import html
import secrets
from collections.abc import Iterable
from urllib.parse import urlencode

from aiohttp import web

from proxy.admin.dashboard.assets import SCRIPT, STYLE


class Html(str):
    """Markup that is safe as it is."""

    __slots__ = ()


def esc(value: object) -> Html:
    if isinstance(value, Html):
        return value
    return Html(html.escape(str(value), quote=True))


def render(template: str, /, **values: object) -> Html:
    """`template` (a constant) with each `{name}` replaced by the escaped value."""
    return Html(template.format_map({name: esc(v) for name, v in values.items()}))


def join(parts: Iterable[object], separator: str = "") -> Html:
    return Html(esc(separator).join(esc(p) for p in parts))


def href(path: str, **query: str | int | None) -> Html:
    """A same-origin link; empty query values are left out."""
    kept = {k: str(v) for k, v in query.items() if v not in (None, "")}
    return esc(path + ("?" + urlencode(kept) if kept else ""))


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def csp(nonce: str) -> str:
    return "; ".join(
        [
            "default-src 'none'",
            f"style-src 'nonce-{nonce}'",
            f"script-src 'nonce-{nonce}'",
            "img-src 'self' data:",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )


def secure(response: web.StreamResponse, nonce: str) -> None:
    """The headers every dashboard response carries, redirects and errors included."""
    response.headers["Content-Security-Policy"] = csp(nonce)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"


_FRAME = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · cycles-proxy</title>
<link rel="icon" href="data:,">
<style nonce="{nonce}">{style}</style>
</head>
<body>
<header class="top"><a class="brand" href="/dashboard">cycles-proxy</a>
<a class="nav" href="/dashboard/reports">Limit reports</a>{account}</header>
<main>
{body}
</main>
<script nonce="{nonce}">{script}</script>
</body>
</html>
"""

_ACCOUNT = """<span class="account"><span class="badge {access}">{label}</span>
<form method="post" action="/dashboard/logout"><button type="submit">Log out</button></form>
</span>"""


def page(title: str, body: Html, nonce: str, access: str | None = None) -> Html:
    account = Html("")
    if access is not None:
        label = "admin" if access == "admin" else "read-only"
        account = render(_ACCOUNT, access=access, label=label)
    return render(
        _FRAME,
        title=title,
        nonce=nonce,
        style=Html(STYLE),
        script=Html(SCRIPT),
        account=account,
        body=body,
    )


def respond(markup: Html, status: int = 200) -> web.Response:
    return web.Response(text=markup, status=status, content_type="text/html", charset="utf-8")


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})
