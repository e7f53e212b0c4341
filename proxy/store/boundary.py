"""The stores' error boundary, declared once: which foreign exceptions (a client library's,
OSError, timeouts) become which of ours.

As limits declares `base_exceptions` on its storage base class, a store class here declares its
`boundary`: one table, most specific rule first, each rule turning some foreign exception types
into our error (LedgerUnavailable: the store cannot be reached now, the caller applies
`fail_mode`; LedgerError: it refused). Subclassing `GuardedStore` applies the table to every
public coroutine method of the class (its interface), so nothing above the store ever sees
redis-py's exceptions, and no method writes its own `try`/`except` for them.

Code that must act on our error before a public method returns enters the same table itself:
`mapped()` inside a store (connect tolerates an unreachable store), `REDIS.around(store)` in the
Redis scripts' runner (store/ledger/scripts.py), whose errors the sweeper isolates per tenant.
The memory stores declare no table: they have no foreign exceptions to map, and pay nothing
for the mechanism.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, TypeVar

Translate = Callable[[str, BaseException], Exception]
"""(the store's name, the foreign exception) → our error."""
Rule = tuple[tuple[type[BaseException], ...], Translate]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Boundary:
    """The table: each rule's types, most specific first, and how each becomes ours."""

    rules: tuple[Rule, ...] = ()
    foreign: tuple[type[BaseException], ...] = field(init=False)
    """Every type some rule names: what `except` catches at the boundary."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "foreign", tuple(t for types, _ in self.rules for t in types))

    def translate(self, store: str, exc: BaseException) -> Exception:
        """Our error for `exc`, by the first rule that names its type."""
        for types, make in self.rules:
            if isinstance(exc, types):
                return make(store, exc)
        raise TypeError(f"{type(exc).__name__} is not an exception this boundary maps")

    def around(self, store: str) -> Mapped:
        """A context in which a foreign exception leaves as ours (`store` names the store)."""
        return Mapped(self, store)


class Mapped:
    """`with boundary.around(store):` (a plain class: cheap enough for the hot path)."""

    __slots__ = ("_boundary", "_store")

    def __init__(self, boundary: Boundary, store: str) -> None:
        self._boundary, self._store = boundary, store

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if exc is not None and isinstance(exc, self._boundary.foreign):
            raise self._boundary.translate(self._store, exc) from exc


class GuardedStore:
    """Base of every store: `boundary` and `store_name` are declared once per class, and every
    public coroutine method of a subclass (inherited from a mixin too) maps through them."""

    boundary: ClassVar[Boundary] = Boundary()
    store_name: ClassVar[str] = "the store"
    """How our errors name the store ("the Redis ledger is unreachable: …")."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.boundary.rules:
            return
        for name in dir(cls):
            member = inspect.getattr_static(cls, name)
            if name.startswith("_") or not inspect.iscoroutinefunction(member):
                continue
            if not getattr(member, "__guarded__", False):
                setattr(cls, name, _guarded(member))

    def mapped(self) -> Mapped:
        """The class's table, for code inside a method that must see our error itself."""
        return self.boundary.around(self.store_name)


def _guarded(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    @functools.wraps(method)
    async def guarded(self: GuardedStore, *args: Any, **kwargs: Any) -> T:
        try:
            return await method(self, *args, **kwargs)
        except self.boundary.foreign as exc:
            raise self.boundary.translate(self.store_name, exc) from exc

    guarded.__guarded__ = True  # type: ignore[attr-defined]
    return guarded
