"""Limit reports: what each budget line's history says about its limit (README "Reports").

    figures.py   every figure of a line, from its daily rollups, and the rules (pure)
    tenant.py    a tenant's report from its rollups, periods and spend (pure)
    read.py      reading what a report needs from the stores
    render.py    JSON (the admin API's shape), CSV and a text table

Used by `cycles-proxy report` (cli/report.py), the admin API (GET /admin/v1/reports/limits)
and the dashboard's reports page.
"""
