"""The ledger's invariants under any sequence of lifecycle operations (issue 15, acceptance 2):
a hypothesis state machine over reserve, commit, release, expiry, sweep, RESET_SPENT, credit,
debit, time-zone and anchor changes and clock jumps (forward and back), on every store
(conftest.ALL_STORES).

After every step, on every budget line the store holds: 0 <= spent, 0 <= reserved, reserved =
the sum of the open reservations on it, remaining <= limit + credit, credit = the sum of the
adjustments, and spent = what the model charged since the line's last reset: each commit its
actual amount, each expiry its estimate, a commit after an expiry charge the difference (only
what exceeds the estimate when a reset since wiped that charge). The model learns only which
reservations the sweeper expired and which lines a reset took (the store's calendar decides);
every amount it expects is its own arithmetic.

The main suite runs a short, derandomized version (the same examples every run, under 60 s).
A long run on fresh examples (`CYCLES_LIFECYCLE_STEPS` sets the steps per example, 40 by
default):

    CYCLES_LIFECYCLE_SEED=random CYCLES_LIFECYCLE_EXAMPLES=2000 \\
        pytest -q tests/store/test_lifecycle_machine.py
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from conftest import EVERY_STORE
from hooks_support import sweep_tenant
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from lifecycle_support import Store, at, ms

from proxy.core.types import ReservationSettings
from proxy.store.ledger.base import BudgetLine, Candidate, Reservation, ReserveRequest
from proxy.store.open import open_store
from proxy.store.tenants import TenantRecord

T = TypeVar("T")
EXAMPLES = int(os.environ.get("CYCLES_LIFECYCLE_EXAMPLES", "100"))
STEPS = int(os.environ.get("CYCLES_LIFECYCLE_STEPS", "40"))
FIXED = os.environ.get("CYCLES_LIFECYCLE_SEED") != "random"
"""Derandomized (the same examples every run) unless CYCLES_LIFECYCLE_SEED=random."""
DAY_MS, CAP_MS = 86_400_000, 1_800_000
LONG = 36_500 * DAY_MS
"""Tombstones, run entries and period entries outlive every example (a century: far more than
STEPS clock jumps of at most 40 days), so nothing is dropped under the model, whatever time the
run itself takes (what dropping does is tested on its own)."""
SETTINGS = ReservationSettings(
    cap_ms=CAP_MS, tombstone_ms=LONG, run_idle_ms=LONG, period_grace_ms=LONG
)
START = ms("2026-11-30T20:00:00")
"""Near the end of a day and a month in every zone used."""
ZONES = {"UTC": 0, "Etc/GMT+11": -660, "Etc/GMT-14": 840}
_tenants = itertools.count()


def lines(tenant: str) -> list[BudgetLine]:
    return [
        BudgetLine("tenant", tenant, "USD", "month", 5000),
        BudgetLine("tenant", tenant, "USD", "day", 2000),
        BudgetLine("workflow", "w", "USD", "month", 3000),
        BudgetLine("run", "r1", "USD", "none", 1500),
    ]


@dataclass
class Held:
    reservation: Reservation
    estimate: int
    state: str = "OPEN"
    generation: int = 0
    """The model's reset generation when the sweeper charged it."""


@dataclass
class Model:
    spent: dict[str, int] = field(default_factory=dict)
    credit: dict[str, int] = field(default_factory=dict)
    reset_at: dict[str, int] = field(default_factory=dict)
    """Per line, the generation of its last reset."""
    generation: int = 0
    held: list[Held] = field(default_factory=list)

    def reserved(self, prefix: str) -> int:
        return sum(
            h.estimate for h in self.held if h.state == "OPEN" and prefix in h.reservation.fields
        )

    def charge(self, prefixes: tuple[str, ...], amount: int) -> None:
        for p in prefixes:
            self.spent[p] = self.spent.get(p, 0) + amount

    def late_commit(self, held: Held, actual: int) -> int:
        """What a commit after an expiry charge adds per line; returns the most added."""
        most = actual - held.estimate
        for p in held.reservation.fields:
            added = actual - held.estimate
            if self.reset_at.get(p, 0) > held.generation:
                added = max(added, 0)
            added = max(added, -self.spent.get(p, 0))
            self.spent[p] = self.spent.get(p, 0) + added
            most = max(most, added)
        return most


class Lifecycle(RuleBasedStateMachine):
    store_url = "memory://"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store: Store = open_store(self.store_url, SETTINGS)
        self.tenant = f"m{os.getpid()}-{next(_tenants)}"
        self.lines = lines(self.tenant)
        self.model = Model()
        self.now = START
        self.zone = "UTC"
        self.ids = itertools.count()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.store.close())
        self.loop.close()

    @initialize()
    def create(self) -> None:
        self.run(self.store.tenants.create_tenant(TenantRecord(self.tenant, "p"), actor="test"))
        self.run(at(self.store, self.now, self.tenant))

    def move(self, by_ms: int) -> None:
        self.now += by_ms
        self.run(at(self.store, self.now, self.tenant))

    # --- calls -------------------------------------------------------------------------------

    @rule(
        usd=st.integers(1, 1600),
        which=st.lists(st.booleans(), min_size=3, max_size=3),
    )
    def reserve(self, usd: int, which: list[bool]) -> None:
        chosen = [
            self.lines[0],
            *(line for line, on in zip(self.lines[1:], which, strict=True) if on),
        ]
        request = ReserveRequest(
            self.tenant,
            f"r{next(self.ids)}",
            chosen,
            [Candidate({"USD": usd})],
            run="r1",
            utc_offset_min=ZONES[self.zone],
        )
        result = self.run(self.store.ledger.reserve(request))
        if result.reservation is None:
            # Denied only when some line cannot hold it.
            assert any(state.remaining < usd for state in result.lines), result
            return
        # Never handed out beyond a line's limit (and credit).
        assert all(state.remaining >= 0 for state in result.lines), result
        self.model.held.append(Held(result.reservation, usd))

    @precondition(lambda self: self.model.held)
    @rule(pick=st.integers(0, 10**6), share=st.integers(0, 200))
    def commit(self, pick: int, share: int) -> None:
        held = self.model.held[pick % len(self.model.held)]
        actual = held.estimate * share // 100
        result = self.run(self.store.ledger.commit(held.reservation, {"USD": actual}))
        assert result.state == "COMMITTED"
        if held.state == "COMMITTED":
            assert not result.first
            return
        assert result.first
        if held.state == "EXPIRED_CHARGED":
            assert result.charged == {"USD": self.model.late_commit(held, actual)}
        else:  # OPEN, or RELEASED (a commit after a release still charges: never under-record)
            assert result.charged == {"USD": actual}
            self.model.charge(held.reservation.fields, actual)
        held.state = "COMMITTED"

    @precondition(lambda self: any(h.state == "EXPIRED_CHARGED" for h in self.model.held))
    @rule(
        pick=st.integers(0, 10**6),
        share=st.integers(0, 200),
        reset_first=st.booleans(),
        busy=st.integers(0, 1600),
    )
    def late_commit(self, pick: int, share: int, reset_first: bool, busy: int) -> None:
        """The commit of a call the sweeper already charged (its reply came after the cap).
        Before it, maybe a RESET_SPENT of every current line (`reset_first`) and another call
        of the run on the same levels, charged `busy` (0: none): a line reset since the expiry
        then holds what a wrongly refunded expiry charge would take from it."""
        late = [i for i, h in enumerate(self.model.held) if h.state == "EXPIRED_CHARGED"]
        held = self.model.held[late[pick % len(late)]]
        if reset_first:
            self.reset(None)
        if busy:
            levels = {tuple(field.split("|")[:2]) for field in held.reservation.fields}
            which = [(line.level, line.value) in levels for line in self.lines[1:]]
            before = len(self.model.held)
            self.reserve(busy, which)
            if len(self.model.held) > before:
                self.commit(before, 100)
        self.commit(self.model.held.index(held), share)

    @precondition(lambda self: self.model.held)
    @rule(pick=st.integers(0, 10**6))
    def release(self, pick: int) -> None:
        held = self.model.held[pick % len(self.model.held)]
        result = self.run(self.store.ledger.release(held.reservation))
        assert result.first == (held.state == "OPEN")
        if held.state == "OPEN":
            held.state = "RELEASED"
        assert result.state == held.state

    @precondition(lambda self: self.model.held)
    @rule(pick=st.integers(0, 10**6), share=st.integers(0, 200), release=st.booleans())
    def settle_lost(self, pick: int, share: int, release: bool) -> None:
        """A settle of a reservation the store no longer has (its tombstone expired, or the
        store lost it), on lines another reservation holds: a commit charges its actual amount
        and frees nothing (what it reserved was settled, or lost, before), a release changes
        no sum."""
        like = self.model.held[pick % len(self.model.held)]
        lost = dataclasses.replace(like.reservation, id=f"lost{next(self.ids)}")
        actual = like.estimate * share // 100
        if release:
            result = self.run(self.store.ledger.release(lost))
            assert (result.state, result.first) == ("RELEASED", True)
            return
        result = self.run(self.store.ledger.commit(lost, {"USD": actual}))
        assert (result.state, result.charged) == ("COMMITTED", {"USD": actual})
        self.model.charge(lost.fields, actual)

    @precondition(lambda self: self.model.held)
    @rule(pick=st.integers(0, 10**6))
    def repeat_reserve(self, pick: int) -> None:
        """A reserve repeated under a reservation's id reserves nothing, and is allowed only
        while the reservation is held (OPEN)."""
        held = self.model.held[pick % len(self.model.held)]
        r = held.reservation
        again = ReserveRequest(self.tenant, r.id, self.lines[:1], [Candidate(dict(r.amounts))])
        result = self.run(self.store.ledger.reserve(again))
        assert result.allowed == (held.state == "OPEN"), (held.state, result)
        assert result.settled == (None if held.state == "OPEN" else held.state)

    # --- time and the sweeper ----------------------------------------------------------------

    @rule(
        by=st.one_of(
            st.integers(1, 3_600_000), st.integers(1, 40 * DAY_MS), st.integers(-7_200_000, -1)
        )
    )
    def clock_jump(self, by: int) -> None:
        self.move(by)

    @rule()
    def sweep(self) -> None:
        self.run(sweep_tenant(self.store, self.tenant))
        for held in self.model.held:
            if held.state != "OPEN":
                continue
            record = self.run(self.store.ledger.reservation(self.tenant, held.reservation.id))
            assert record is not None
            if record.state == "EXPIRED_CHARGED":
                held.state, held.generation = record.state, self.model.generation
                self.model.charge(held.reservation.fields, held.estimate)
            else:
                assert record.state == "OPEN", record

    @precondition(lambda self: any(h.state == "OPEN" for h in self.model.held))
    @rule()
    def expire(self) -> None:
        """Past the cap of every open reservation, then a sweep."""
        self.move(CAP_MS + 1000)
        self.sweep()

    # --- the operator ------------------------------------------------------------------------

    @rule(level=st.sampled_from([None, "tenant", "workflow", "run"]))
    def reset(self, level: str | None) -> None:
        rows = self.run(
            self.store.tenants.reset(
                self.tenant, level=level, value=None, actor="test", reason="reset"
            )
        )
        if rows:
            self.model.generation += 1
        for row in rows:
            prefix = f"{row.level}|{row.value}|{row.unit}|{row.period_id}"
            self.model.spent[prefix] = 0
            self.model.reset_at[prefix] = self.model.generation
            assert row.spent == 0

    @rule(index=st.integers(0, 3), amount=st.integers(-3000, 3000))
    def adjust(self, index: int, amount: int) -> None:
        """A credit (amount > 0) or a debit (< 0) on the line's current period."""
        line = self.lines[index]
        row = self.run(
            self.store.tenants.adjust(
                self.tenant,
                level=line.level,
                value=line.value,
                unit=line.unit,
                period=line.period,
                amount=amount,
                actor="test",
                reason="adjust",
            )
        )
        prefix = f"{row.level}|{row.value}|{row.unit}|{row.period_id}"
        self.model.credit[prefix] = self.model.credit.get(prefix, 0) + amount

    @rule(zone=st.sampled_from(sorted(ZONES)))
    def change_zone(self, zone: str) -> None:
        self.run(
            self.store.tenants.update_tenant(self.tenant, actor="test", reason="tz", timezone=zone)
        )
        self.zone = zone

    @rule(day=st.integers(1, 31))
    def change_anchor(self, day: int) -> None:
        self.run(
            self.store.tenants.update_tenant(self.tenant, actor="test", reason="a", anchor_day=day)
        )

    # --- what must hold after every step -----------------------------------------------------

    @invariant()
    def every_line_balances(self) -> None:
        rows = self.run(self.store.ledger.balances(self.tenant))
        seen = set()
        for row in rows:
            prefix = f"{row.level}|{row.value}|{row.unit}|{row.period_id}"
            seen.add(prefix)
            assert row.spent >= 0 and row.reserved >= 0, row
            assert row.reserved == self.model.reserved(prefix), (prefix, row)
            assert row.spent == self.model.spent.get(prefix, 0), (prefix, row)
            assert row.credit == self.model.credit.get(prefix, 0), (prefix, row)
        assert {p for p, x in self.model.spent.items() if x} <= seen

    @invariant()
    def remaining_never_exceeds_limit_plus_credit(self) -> None:
        now = self.run(self.store.ledger.lines(self.tenant, self.lines, ZONES[self.zone]))
        for balance in now:
            assert balance.remaining <= balance.line.limit + balance.credit, balance


@EVERY_STORE
def test_ledger_invariants_hold_under_any_lifecycle(store_url: str) -> None:
    kind = store_url.split(":")[0].replace("+", "_")
    machine = type(f"Lifecycle_{kind}", (Lifecycle,), {"store_url": store_url})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=FIXED,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
