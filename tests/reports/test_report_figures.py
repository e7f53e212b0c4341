"""Every figure of a limit report on hand-built daily rows, against hand-computed answers."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from proxy.reports.figures import Period, Window, nearest_rank
from proxy.reports.render import report_json, to_csv, to_table
from proxy.reports.tenant import tenant_report
from proxy.store.ledger.base import DayRollup

USD = 10**8
TODAY = date(2026, 12, 5)
WINDOW = Window(TODAY, 30)  # 2026-11-06 .. 2026-12-05
ACME_DAY = ("tenant", "acme", "USD", "day")
ACME_MONTH = ("tenant", "acme", "USD", "month")
PERIODS = {
    "day": Period("d20261205", TODAY, TODAY + timedelta(days=1)),
    "month": Period("m20261201", date(2026, 12, 1), date(2027, 1, 1)),
}


def Row(day: str, **given: Any) -> DayRollup:
    """A day's rollup of acme's $10 day line, with what the test gives."""
    fields: dict[str, Any] = {
        "level": "tenant",
        "value": "acme",
        "unit": "USD",
        "period": "day",
        "limit": 10 * USD,
        "spent": 0,
        "reserved_peak": 0,
        "calls": 1,
        "reserved_sum": 0,
        "committed_sum": 0,
        "denials": {},
        "degradations": {},
        "shadow_denials": 0,
        "value_peak": 0,
    }
    return DayRollup(day=day, **(fields | given))


def days() -> list[date]:
    return [WINDOW.first + timedelta(days=i) for i in range(30)]


def steady() -> list[DayRollup]:
    """$3 a day for 30 days on a $100 month line (anchor 1): $90 by 30 November, $15 today."""
    rows = []
    for d in days():
        in_period = 3 * USD * d.day  # every day of the month so far at $3
        rows.append(
            Row(
                d.isoformat(),
                period="month",
                limit=100 * USD,
                spent=3 * USD,
                calls=3,
                reserved_sum=4 * USD,
                committed_sum=3 * USD,
                value_peak=in_period,
            )
        )
    return rows


def one_line(rows: list[DayRollup], mode: str = "enforce", spent: int = 0) -> dict:  # type: ignore[type-arg]
    report = tenant_report(
        "acme", mode, WINDOW, rows, PERIODS, {ACME_MONTH: spent, ACME_DAY: spent}
    )
    [line] = report_json(report)["lines"]
    return line  # type: ignore[no-any-return]


def units(amount: dict) -> int:  # type: ignore[type-arg]
    return int(amount["units"])


def test_nearest_rank_percentile() -> None:
    values = [15, 20, 35, 40, 50]
    assert [nearest_rank(values, p) for p in (5, 30, 40, 50, 95, 100)] == [15, 20, 20, 35, 50, 50]
    assert nearest_rank([7], 95) == 7


def test_a_steady_tenant_at_three_dollars_a_day() -> None:
    line = one_line(steady(), spent=15 * USD)
    daily = line["daily_spend"]
    assert [units(daily[k]) for k in ("p50", "p95", "max")] == [3 * USD] * 3
    assert units(line["limit"]) == 100 * USD and units(line["spent_this_period"]) == 15 * USD
    assert line["days"] == 30 and line["days_limit_hit"] == 0
    assert line["calls"] == 90 and line["denials"] == 0
    assert line["over_reservation"] == "1.3333"  # $120 reserved for $90 committed
    # p95 $3 x 31 days of December x 1.2 = $111.60, above the $90 November reached.
    assert units(line["recommended_limit"]) == 11160 * 10**6
    assert line["recommended_rule"] == "p95-daily"
    assert line["recommended_limit"]["text"] == "111.600000 USD"
    # $15 so far + $3 (the last 7 days' mean) x 26 days left after the 5th.
    assert units(line["forecast"]) == 93 * USD


def spike() -> list[DayRollup]:
    """$2 a day on a $10 day line, but $10 on 20 November (4 denials) and $7 on the 21st."""
    rows = []
    for d in days():
        spent = {20: 10 * USD, 21: 7 * USD}.get(d.day, 2 * USD) if d.month == 11 else 2 * USD
        denied = {"budget": 4} if (d.month, d.day) == (11, 20) else {}
        rows.append(Row(d.isoformat(), spent=spent, value_peak=spent, denials=denied))
    return rows


def test_a_spike_sets_max_and_p95_and_one_day_hit_the_limit() -> None:
    line = one_line(spike(), spent=2 * USD)
    daily = line["daily_spend"]
    # 28 days at $2, then $7 and $10: rank ceil(15) = 15 is $2, rank ceil(28.5) = 29 is $7.
    assert [units(daily[k]) for k in ("p50", "p95", "max")] == [2 * USD, 7 * USD, 10 * USD]
    assert line["days_limit_hit"] == 1  # the 20th: denials, and $10 reached the $10
    assert line["denials"] == 4 and line["denials_by_reason"] == {"budget": 4}
    # $7 x 1 day x 1.2 = $8.40, but the line denied calls at its $10: never below that.
    assert units(line["recommended_limit"]) == 10 * USD
    assert line["recommended_rule"] == "denied-at-limit"
    assert units(line["forecast"]) == 2 * USD  # a day line: no day left after today


def test_a_line_never_denied_is_never_recommended_below_its_observed_max() -> None:
    rows = [
        Row(d.isoformat(), limit=100 * USD, spent=s, value_peak=s)
        for d in days()
        for s in [50 * USD if d.day == 15 else USD]
    ]
    line = one_line(rows)
    assert units(line["daily_spend"]["p95"]) == USD  # p95 x 1 x 1.2 = $1.20 ...
    assert units(line["recommended_limit"]) == 50 * USD  # ... but $50 was spent in one day
    assert line["recommended_rule"] == "observed-max"


def test_a_line_that_denied_is_recommended_by_p95_when_that_is_above_its_limit() -> None:
    rows = [Row(d.isoformat(), limit=USD, spent=2 * USD, value_peak=2 * USD) for d in days()]
    rows[-1] = Row(rows[-1].day, limit=USD, spent=USD, value_peak=USD, denials={"budget": 3})
    line = one_line(rows)
    assert units(line["recommended_limit"]) == 240 * 10**6  # $2 x 1 x 1.2, above the $1
    assert line["recommended_rule"] == "p95-daily"


def test_an_enforced_forecast_stops_at_the_limit_a_shadow_one_does_not() -> None:
    rows = [
        Row(d.isoformat(), period="month", limit=100 * USD, spent=10 * USD, value_peak=0)
        for d in days()
    ]
    # $50 spent this month, $10 a day lately, 26 days left: $310 ahead, $100 enforced.
    assert units(one_line(rows, spent=50 * USD)["forecast"]) == 100 * USD
    assert units(one_line(rows, mode="shadow", spent=50 * USD)["forecast"]) == 310 * USD
    assert units(one_line(rows, spent=120 * USD)["forecast"]) == 120 * USD  # already above


def test_a_day_hits_the_limit_by_spend_or_by_a_would_be_denial_alone() -> None:
    rows = [
        Row("2026-11-20", spent=4 * USD, value_peak=10 * USD),  # the period reached $10
        Row("2026-11-21", spent=USD, value_peak=9 * USD),  # nothing reached
        Row("2026-11-22", spent=USD, value_peak=USD, shadow_denials=1),  # a $9 ask, in shadow
    ]
    assert one_line(rows, mode="shadow")["days_limit_hit"] == 2


def test_a_recommendation_is_rounded_up_to_a_cent() -> None:
    week = [f"2026-11-{d}" for d in range(29, 31)] + [f"2026-12-0{d}" for d in range(1, 6)]
    line = one_line([Row(day, spent=10_076_000, value_peak=10_076_000) for day in week])
    assert line["recommended_limit"]["text"] == "0.130000 USD"  # p95 $0.10076 x 1 day x 1.2


def test_under_a_week_of_history_keeps_the_limit_in_force() -> None:
    """Six days of a steady $0.10 on a $10 line: too little to size it, the limit stays; a
    seventh day and the percentile speaks."""
    six = [f"2026-11-{d}" for d in range(30, 31)] + [f"2026-12-0{d}" for d in range(1, 6)]
    line = one_line([Row(day, spent=10_000_000, value_peak=10_000_000) for day in six])
    assert line["recommended_rule"] == "too-little-history"
    assert line["recommended_limit"]["text"] == "10.000000 USD"
    seven = [Row("2026-11-29", spent=10_000_000, value_peak=10_000_000)] + [
        Row(day, spent=10_000_000, value_peak=10_000_000) for day in six
    ]
    assert one_line(seven)["recommended_rule"] == "p95-daily"


def test_a_new_tenants_days_before_its_first_rollup_do_not_count() -> None:
    """A tenant whose history starts on 3 December: its window is 3 to 5 December, not 30 days
    of which 27 at zero (which would make its p95 zero)."""
    line = one_line([Row("2026-12-03", spent=5 * USD, value_peak=5 * USD)])
    daily = line["daily_spend"]
    assert [units(daily[k]) for k in ("p50", "p95", "max")] == [0, 5 * USD, 5 * USD]
    # Three days of history: the limit in force stays (MIN_HISTORY_DAYS).
    assert (units(line["recommended_limit"]), line["recommended_rule"]) == (
        10 * USD,
        "too-little-history",
    )


def test_a_never_denied_line_is_not_recommended_below_its_forecast() -> None:
    """$10 today after 29 quiet days on a month line: p95 is 0 and the most spent in the period
    $10, but the forecast is $10 + $10/7 x 26 days left = $47.1428…"""
    rows = [Row("2026-11-06", period="month", limit=1000 * USD)]
    rows.append(
        Row("2026-12-05", period="month", limit=1000 * USD, spent=10 * USD, value_peak=10 * USD)
    )
    line = one_line(rows, mode="shadow", spent=10 * USD)
    assert units(line["forecast"]) == 10 * USD + -(-10 * USD * 26 // 7)
    assert line["recommended_rule"] == "forecast"
    assert units(line["recommended_limit"]) == 4715 * 10**6  # rounded up to a cent


def test_days_without_rows_count_as_zero_spend() -> None:
    line = one_line([Row("2026-11-10", spent=5 * USD, value_peak=5 * USD)])
    daily = line["daily_spend"]
    assert [units(daily[k]) for k in ("p50", "p95", "max")] == [0, 0, 5 * USD]  # 29 days at 0
    assert line["recommended_rule"] == "observed-max"  # p95 0 x 1.2 < $5 observed
    assert line["over_reservation"] is None  # nothing committed


def test_runs_are_recommended_from_the_largest_one_run() -> None:
    rows = [
        Row(d, level="run", value="*", period="none", limit=5 * USD, spent=s, value_peak=peak)
        for d, s, peak in [("2026-11-10", 9 * USD, 3 * USD), ("2026-11-11", 4 * USD, 4 * USD)]
    ]
    line = one_line(rows)
    assert units(line["recommended_limit"]) == 480 * 10**6  # $4 x 1.2
    assert line["recommended_rule"] == "peak-value"
    assert line["spent_this_period"] is None and line["forecast"] is None


def shadowed() -> list[DayRollup]:
    """A $10 day line in shadow: 3 would-be denials on 10 November ($20 spent), 2 on the 12th
    ($12 spent), $5 other days."""
    rows = []
    for d in days():
        spent, would = {(11, 10): (20 * USD, 3), (11, 12): (12 * USD, 2)}.get(
            (d.month, d.day), (5 * USD, 0)
        )
        rows.append(Row(d.isoformat(), spent=spent, value_peak=spent, shadow_denials=would))
    return rows


def test_a_shadow_tenant_sees_what_enforcing_would_have_done() -> None:
    rows = shadowed()
    line = one_line(rows, mode="shadow")
    assert line["shadow_denials"] == 5 and line["shadow_days"] == 2
    assert line["shadow_first_day"] == "2026-11-10"
    assert units(line["shadow_refused"]) == 12 * USD  # $10 over on the 10th, $2 on the 12th
    assert line["days_limit_hit"] == 2 and line["denials"] == 0
    # $12 x 1.2 = $14.40: would-be denials, so the $20 of the 10th sets no floor.
    assert units(line["recommended_limit"]) == 1440 * 10**6
    assert line["recommended_rule"] == "p95-daily"
    report = tenant_report("acme", "shadow", WINDOW, rows, PERIODS, {})
    text = to_table([report])
    assert "would have denied 5 calls on 2 days; first on 2026-11-10" in text
    assert "enforcing would have refused ≈ 12.000000 USD" in text


def test_denials_and_degradations_are_summed_by_reason_and_rule() -> None:
    rows = [
        Row("2026-11-20", denials={"budget": 2}, degradations={"degrade[0]": 3}),
        Row("2026-11-21", degradations={"degrade[0]": 1, "degrade[1]": 4}),
        Row("2026-11-22", denials={"budget": 1}),
    ]
    line = one_line(rows)
    assert line["denials"] == 3 and line["denials_by_reason"] == {"budget": 3}
    assert line["degradations"] == 8
    assert line["degradations_by_rule"] == {"degrade[0]": 4, "degrade[1]": 4}


def test_tenant_wide_denials_are_reported_apart_from_the_lines() -> None:
    wide = {"level": "-", "value": "-", "unit": "-", "period": "-", "limit": 0, "calls": 0}
    rows = [
        *steady(),
        Row("2026-12-01", **wide, denials={"quota:runs_per_day": 2}),
        Row("2026-12-02", **wide, denials={"quota:runs_per_day": 1}, shadow_denials=4),
    ]
    report = report_json(tenant_report("acme", "enforce", WINDOW, rows, PERIODS, {}))
    assert len(report["lines"]) == 1
    assert report["other_denials"] == {"quota:runs_per_day": 3}
    assert report["other_shadow_denials"] == 4


def test_csv_parses_with_one_row_per_line_and_amounts_as_text() -> None:
    steady_report = tenant_report(
        "steady", "enforce", WINDOW, steady(), PERIODS, {ACME_MONTH: 15 * USD}
    )
    shadow_report = tenant_report("quiet", "shadow", WINDOW, shadowed(), PERIODS, {})
    parsed = list(csv.DictReader(io.StringIO(to_csv([steady_report, shadow_report]))))
    assert [r["tenant"] for r in parsed] == ["steady", "quiet"]
    first = parsed[0]
    assert first["recommended_limit"] == "111.600000 USD" and first["forecast"] == "93.000000 USD"
    assert Decimal(first["over_reservation"]) == Decimal("1.3333")
    assert parsed[1]["shadow_denials"] == "5" and parsed[1]["shadow_first_day"] == "2026-11-10"
