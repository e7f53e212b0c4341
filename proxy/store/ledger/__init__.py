"""The ledger: budgets reserved atomically before a call, settled after it.

`base.Ledger` is the interface the rest of the proxy uses; `proxy.store.open.open_store` picks
the implementation by the store URL's scheme (memory.py or redis.py), and nothing outside the
store imports one directly.
"""

from __future__ import annotations

from proxy.store.ledger.base import Ledger
from proxy.store.ledger.memory import MemoryLedger
from proxy.store.ledger.redis import RedisLedger

__all__ = ["Ledger", "MemoryLedger", "RedisLedger"]
