"""Keys in this process only (`memory://`): a change evicts every listening cache directly."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from proxy.store.api_keys.records import KeyRecord, KeyStoreBase, Row, now_ms


class MemoryKeyStore(KeyStoreBase):
    def __init__(self, clock: Callable[[], int] = now_ms) -> None:
        super().__init__(clock)
        self._global: dict[str, Row] = {}
        self._tenants: dict[str, dict[str, Row]] = {}

    async def lookup(self, sha: str) -> KeyRecord | None:
        row = self._global.get(sha)
        return None if row is None else row[1]

    async def _rows(self, tenant: str) -> dict[str, Row]:
        return dict(self._tenants.get(tenant, {}))

    async def _put(self, rows: Sequence[Row]) -> None:
        for sha, record in rows:
            self._tenants.setdefault(record.tenant, {})[record.key_id] = (sha, record)
            self._global[sha] = (sha, record)
        self._changed([sha for sha, _ in rows])
