"""The lifetimes a policy must keep in order, checked when it is compiled (so every load and
`cycles-proxy check` refuse a contradiction, naming the field to change):

    cap_seconds > connect + first_byte + stream_total + drain_after_disconnect
    cap_seconds > connect + non_stream_answer
    tombstone_seconds >= cap_seconds
    run_idle_seconds > cap_seconds
    user_idle_seconds > cap_seconds

An open reservation must outlive the longest call the proxy lets run, from opening the
connection to the end of the drain after a client left (for the policy's timeouts and for every
route's own), or the sweeper would resolve it while its call is still running. A settled one is
remembered at least as long, so a late or repeated settle is recognised. A run's entries (its
budget, its step and day counters) must outlive any call of the run still open, or they would
expire under it and the run would start again from nothing; an end user's likewise.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from proxy.core.types import ReservationSettings
from proxy.policy.spec import PolicySpec
from proxy.policy.upstreams import Timeouts

Loc = tuple[str | int, ...]
CAP: Loc = ("reservations", "cap_seconds")


@dataclass(frozen=True, slots=True)
class _Span:
    """A sum of timeouts, each with where its value is written."""

    parts: tuple[tuple[Loc, float], ...]
    blamed: Loc
    """Where to point when the sum is too long and cap_seconds was not written."""

    @property
    def total(self) -> float:
        return sum(value for _, value in self.parts)

    def text(self) -> str:
        names = " + ".join(_path(loc) for loc, _ in self.parts)
        values = " + ".join(f"{value:g}" for _, value in self.parts)
        return f"{names} ({values} = {self.total:g})"


def check(
    spec: PolicySpec, timeouts: Timeouts, settings: ReservationSettings, given: Mapping[str, object]
) -> Iterator[tuple[Loc, str]]:
    """Every contradiction among the policy's lifetimes, as (field path, message)."""
    cap = settings.cap_ms // 1000
    stream = max(_spans(spec, timeouts, "stream_total"), key=lambda s: s.total)
    if cap <= stream.total:
        yield (
            (CAP if "cap_seconds" in given else stream.blamed),
            (
                f"reservations.cap_seconds ({cap}) must exceed {stream.text()}, or an open "
                "reservation would expire while its stream is still running; raise cap_seconds or "
                "lower the timeouts"
            ),
        )
    answer = max(_spans(spec, timeouts, "non_stream_answer"), key=lambda s: s.total)
    if cap <= answer.total:
        yield (
            (CAP if "cap_seconds" in given else answer.blamed),
            (
                f"reservations.cap_seconds ({cap}) must exceed {answer.text()}, or an open "
                "reservation would expire while its call still waits for the answer; raise "
                "cap_seconds or lower the timeout"
            ),
        )
    tombstone = settings.tombstone_ms // 1000
    if tombstone < cap:
        yield (
            ("reservations", "tombstone_seconds"),
            (
                f"reservations.tombstone_seconds ({tombstone}) must be at least cap_seconds "
                f"({cap}), so a late or repeated settle is recognised"
            ),
        )
    for name, whose in (("run_idle", "a run's"), ("user_idle", "an end user's")):
        idle = getattr(settings, f"{name}_ms") // 1000
        if idle <= cap:
            at = f"{name}_seconds" if f"{name}_seconds" in given else "cap_seconds"
            yield (
                ("reservations", at),
                (
                    f"reservations.{name}_seconds ({idle}) must exceed cap_seconds ({cap}), or "
                    f"{whose} budget and counters could expire while one of its calls is still "
                    "open"
                ),
            )


def _spans(spec: PolicySpec, timeouts: Timeouts, last: str) -> Iterator[_Span]:
    """connect (+ first_byte) + `last` (+ the drain, for a stream): the policy's, then each
    route's, every value taken from where that route's calls find it."""
    stream = last == "stream_total"
    names = ("connect", "first_byte", last) if stream else ("connect", last)
    drain = ((("timeouts", "drain_after_disconnect"), timeouts.drain_after_disconnect),)
    tail = drain if stream else ()
    parts = tuple((("timeouts", n), float(getattr(timeouts, n))) for n in names)
    yield _Span((*parts, *tail), ("timeouts", last))
    for index, route in enumerate(spec.routes):
        own = route.timeouts
        if own is None:
            continue
        here: Loc = ("routes", index, "timeouts")
        mine = tuple(
            ((*here, n), float(getattr(own, n)))
            if getattr(own, n) is not None
            else (("timeouts", n), float(getattr(timeouts, n)))
            for n in names
        )
        blamed = (*here, last) if getattr(own, last) is not None else ("timeouts", last)
        yield _Span((*mine, *tail), blamed)


def _path(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text
