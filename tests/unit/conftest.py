"""The fast tier: domain rules and use cases on in-memory fakes (tests/fakes.py) and a
stepped clock. Nothing here needs PostgreSQL, Redis or a network."""

from __future__ import annotations

import pytest

from identity.store.keys import StoredKey
from tests.fakes import FastServices, fast_services, make_key_ring


@pytest.fixture(scope="session")
async def key_ring() -> dict[str, StoredKey]:
    return await make_key_ring()


@pytest.fixture
def fast(key_ring: dict[str, StoredKey]) -> FastServices:
    return fast_services(key_ring)
