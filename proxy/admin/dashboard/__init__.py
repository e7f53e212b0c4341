"""The dashboard: server-rendered HTML on the admin listener, at /dashboard.

    routes.py       the routes, and the middleware that gives dashboard routes sessions and
                    every other admin route the bearer check
    session.py      the signed session cookie, the Origin check, the login throttle
    figures.py      the numbers, read from the ledger and the audit trail (scan.py)
    pages.py        the login page and the tenants table; tenant_page.py, a tenant's page;
                    report_page.py, the limit reports (admin/report_routes.py reads them)
    charts.py       inline SVG; markup.py: escaping, the page frame, the security headers;
                    assets.py: the inline stylesheet and script

No external assets: it works air-gapped. It only reads; changes go through the admin API.
"""

from proxy.admin.dashboard.routes import add_routes, authenticate

__all__ = ["add_routes", "authenticate"]
