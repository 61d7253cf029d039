"""Invalidation in proportion to the change, on the fast tier: the fake change log says
what each version touched, as the triggers of migration 0008 do, and the permission
cache drops only that. (The lease protocol around it: test_rbac_sync_fast.py.)"""

from __future__ import annotations

import asyncio
import gc
import uuid
from datetime import timedelta
from typing import Any

import pytest

from identity.domain.rbac_changes import (
    MAX_ROWS_TRIMMED,
    MAX_VERSIONS_TRIMMED,
    LoggedChange,
    RbacChanges,
    summarise,
)
from identity.services import permission_tables
from identity.services.permission_tables import Tables, User, deadline_of, pack_user, release, user_key
from tests.fakes import FakeRoles
from tests.unit.rbac_harness import Rbac

PUBLISH = "catalog.films.publish"
DELETE = "catalog.films.delete"
BILLING = "billing.refund"


async def _three_users(rbac: Rbac) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID]:
    """ann and bob hold `editors` (PUBLISH), cid holds `billing`; all three cached."""
    editors, billing = await rbac.role(PUBLISH), await rbac.role(BILLING)
    ann, bob, cid = await rbac.user("ann"), await rbac.user("bob"), await rbac.user("cid")
    await rbac.give(ann, editors)
    await rbac.give(bob, editors)
    await rbac.give(cid, billing)
    rbac.apply()
    for user in (ann, bob, cid):
        await rbac.cache.user(user)
    assert rbac.user_reads == 3 and rbac.cache.users == 3
    return ann, bob, cid, editors, billing


async def test_an_assignment_change_drops_only_that_users_entry() -> None:
    rbac = Rbac()
    ann, bob, cid, editors, _ = await _three_users(rbac)
    async with rbac.db.transaction() as uow:
        await uow.roles.revoke(ann, editors)
    rbac.apply()
    assert rbac.cache.users == 2
    assert not await rbac.holds(ann, PUBLISH)
    assert await rbac.holds(bob, PUBLISH)
    assert rbac.user_reads == 4  # ann alone read again
    assert rbac.cache.known_for_user(str(cid), BILLING) is not None


async def test_a_role_change_updates_that_role_once_and_keeps_every_users_entry() -> None:
    rbac = Rbac()
    ann, bob, cid, editors, _ = await _three_users(rbac)
    async with rbac.db.transaction() as uow:
        await uow.roles.set_permissions(editors, frozenset({DELETE}))
    rbac.apply()
    assert rbac.cache.users == 3
    assert rbac.cache.known_for_user(str(ann), PUBLISH) is None  # the role is gone from memory
    assert await rbac.holds(ann, DELETE) and not await rbac.holds(ann, PUBLISH)
    assert await rbac.holds(bob, DELETE)
    assert rbac.user_reads == 3  # no user read again
    assert rbac.role_reads == 1  # the role read once, for both of its holders
    assert await rbac.holds(cid, BILLING)


async def test_a_deleted_role_drops_its_holders_only() -> None:
    rbac = Rbac()
    ann, bob, cid, editors, _ = await _three_users(rbac)
    async with rbac.db.transaction() as uow:
        await uow.roles.delete(editors)
    rbac.apply()
    assert rbac.cache.users == 1
    assert not await rbac.holds(ann, PUBLISH) and not await rbac.holds(bob, PUBLISH)
    assert await rbac.holds(cid, BILLING)
    assert rbac.user_reads == 5


async def test_a_role_that_lost_holders_in_bulk_makes_its_holders_read_again() -> None:
    rbac = Rbac()
    ann, bob, cid, editors, _ = await _three_users(rbac)
    # Too many holders to name: the log names the role (a forced DeleteRole of a big one).
    state = rbac.db.state.rbac
    state.assignments = {k: v for k, v in state.assignments.items() if k[1] != editors}
    state.version += 1
    state.changes.append(LoggedChange(state.version, "members", role_id=editors))
    rbac.apply()
    assert rbac.cache.users == 3  # nothing walked, nothing dropped
    assert rbac.cache.known_for_user(str(ann), PUBLISH) is None
    assert not await rbac.holds(ann, PUBLISH) and not await rbac.holds(bob, PUBLISH)
    assert rbac.user_reads == 5
    assert await rbac.holds(cid, BILLING)
    assert rbac.user_reads == 5
    # Read after the change: answered from memory again.
    refused = rbac.cache.known_for_user(str(ann), PUBLISH)
    assert refused is not None and not refused.allowed


async def test_a_role_deleted_while_only_its_entry_was_missing_reads_the_user_again() -> None:
    rbac = Rbac()
    ann, _, _, editors, _ = await _three_users(rbac)
    async with rbac.db.transaction() as uow:
        await uow.roles.set_permissions(editors, frozenset({DELETE}))
    rbac.apply()
    # Deleted behind the cache's back (its change not applied yet): the role read finds
    # nothing, so the user is read again rather than answered with a role missing.
    state = rbac.db.state.rbac
    del state.roles[editors]
    state.assignments = {k: v for k, v in state.assignments.items() if k[1] != editors}
    assert not await rbac.holds(ann, DELETE)
    assert rbac.role_reads == 1 and rbac.user_reads == 4


async def test_a_service_key_or_catalogue_change_leaves_users_and_roles_alone() -> None:
    rbac = Rbac()
    ann, *_ = await _three_users(rbac)
    await rbac.cache.catalogue()
    reads = rbac.db.state.rbac.catalogue_reads
    state = rbac.db.state.rbac
    state.version += 1
    state.changes.append(LoggedChange(state.version, "keys"))
    state.version += 1
    state.changes.append(LoggedChange(state.version, "catalogue"))
    rbac.apply()
    assert rbac.cache.users == 3
    assert rbac.cache.known_for_user(str(ann), PUBLISH) is not None  # a grant needs no catalogue
    assert rbac.cache.known_for_user(str(ann), BILLING) is None  # a refusal does: gone
    await rbac.cache.catalogue()
    assert rbac.db.state.rbac.catalogue_reads == reads + 1
    assert rbac.user_reads == 3


async def test_a_change_applied_while_a_user_is_read_is_not_kept_nor_joined(monkeypatch) -> None:
    rbac = Rbac()
    ann, _, _, editors, _ = await _three_users(rbac)
    async with rbac.db.transaction() as uow:
        await uow.roles.revoke(ann, editors)
    rbac.apply()
    read, release_read = asyncio.Event(), asyncio.Event()
    original = FakeRoles.held_roles

    async def held(self: FakeRoles, user_id: uuid.UUID) -> Any:
        snapshot = await original(self, user_id)
        if not read.is_set():
            read.set()
            await release_read.wait()
        return snapshot

    monkeypatch.setattr(FakeRoles, "held_roles", held)
    stale = asyncio.ensure_future(rbac.cache.user(ann))
    await read.wait()  # read, before the next change
    async with rbac.db.transaction() as uow:
        await uow.roles.assign(ann, editors, None, None)
    rbac.apply()  # applied while the read is in flight
    fresh = asyncio.ensure_future(rbac.cache.user(ann))  # began after: joins nothing older
    await asyncio.sleep(0.01)
    release_read.set()
    assert [role.name for role in (await stale).live] == []
    assert len((await fresh).live) == 1
    assert rbac.user_reads == 5
    assert await rbac.holds(ann, PUBLISH)
    assert rbac.user_reads == 5  # the fresh read was kept, the older one not


async def test_clearing_replaces_the_tables_and_frees_the_old_ones_a_chunk_per_turn(monkeypatch) -> None:
    monkeypatch.setattr(permission_tables, "_RELEASE_CHUNK", 2)
    rbac = Rbac()
    users = [await rbac.user(f"u{i}") for i in range(7)]
    role = await rbac.role(PUBLISH)
    for user in users:
        await rbac.give(user, role)
    rbac.apply()
    for user in users:
        await rbac.cache.user(user)
    old = rbac.cache._tables.users
    assert len(old) == 7
    rbac.sync.observe(rbac.db.state.rbac.version + 1)  # a gap
    assert rbac.cache.users == 0 and len(old) == 7
    sizes = []
    while old:
        await asyncio.sleep(0)
        sizes.append(len(old))
    assert sizes == [5, 3, 1, 0]


def test_a_small_table_is_left_to_reference_counting() -> None:
    table = {str(i): i for i in range(3)}
    release(table)  # no running loop, nothing scheduled
    assert len(table) == 3


async def test_eviction_drops_the_oldest_users_a_batch_at_a_time() -> None:
    tables = Tables()
    record = pack_user(1, 1e9, False, [], [])
    for i in range(64):
        tables.add_user(i, record, 64)
    tables.add_user(100, record, 64)
    assert len(tables.users) == 63 and 0 not in tables.users and 1 not in tables.users
    assert 2 in tables.users and 100 in tables.users
    tables.add_user(2, record, 63)  # already there: replaced, nothing evicted
    assert len(tables.users) == 63


def test_a_user_record_packs_its_roles_and_deadline() -> None:
    record = pack_user(2**40, 12.5, True, [3, 70000], [9])
    user = User(record)
    assert (user.version, user.deadline, user.disabled, user.live, user.expired) == (
        2**40,
        12.5,
        True,
        (3, 70000),
        (9,),
    )
    assert deadline_of(record) == 12.5
    assert len(record) <= 40


def test_only_the_canonical_text_of_a_user_id_is_a_key_without_parsing() -> None:
    user_id = uuid.uuid4()
    assert user_key(str(user_id)) == user_key(str(user_id).upper()) == user_id.int
    for other in (user_id.hex, "{" + str(user_id) + "}", str(user_id)[:-1] + "g", str(user_id)[:-1] + "_"):
        assert user_key(other) is None
    arabic_three = "\u0663"
    assert user_key(str(user_id)[:-1] + arabic_three) is None


async def test_cached_users_are_records_the_garbage_collector_never_tracks() -> None:
    rbac = Rbac()
    user = await rbac.user("ann")
    await rbac.give(user, await rbac.role(PUBLISH, DELETE))
    rbac.apply()
    await rbac.cache.user(user)
    [(key, _record)] = rbac.cache._tables.users.items()
    assert key == user.int
    # Nor the table of them: a dict of ints and bytes is left out of every collection.
    assert not gc.is_tracked(rbac.cache._tables.users)


async def test_an_expiring_assignment_is_answered_until_it_expires_then_read_again() -> None:
    rbac = Rbac()
    user = await rbac.user("ann")
    role = await rbac.role(PUBLISH)
    async with rbac.db.transaction() as uow:
        await uow.roles.assign(user, role, rbac.clock.now() + timedelta(seconds=30), None)
    rbac.apply()
    await rbac.cache.user(user)
    assert rbac.cache.known_for_user(str(user), PUBLISH) is not None
    rbac.clock.advance(timedelta(seconds=30))
    assert rbac.cache.known_for_user(str(user), PUBLISH) is None
    assert not await rbac.holds(user, PUBLISH)
    assert rbac.user_reads == 2


# -- the log's summary ------------------------------------------------------------------


def test_a_summary_names_what_each_version_touched() -> None:
    ann, role, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    rows = [
        LoggedChange(5, "user", user_id=ann),
        LoggedChange(6, "role", role_id=role),
        LoggedChange(6, "catalogue"),
        LoggedChange(7, "members", role_id=other),
        LoggedChange(8, "none"),
        LoggedChange(9, "keys"),
    ]
    assert summarise(4, 9, rows) == RbacChanges(
        9,
        users=frozenset({ann}),
        roles=frozenset({role}),
        members=frozenset({other}),
        catalogue=True,
        keys=True,
    )


@pytest.mark.parametrize(
    ("after", "upto", "rows"),
    [
        (4, 6, [LoggedChange(5, "none")]),  # 6 has no row: a gap
        (4, 5, [LoggedChange(5, "all")]),
        (4, 5, [LoggedChange(5, "rename")]),  # a kind this version does not know
        (4, 5, [LoggedChange(5, "user")]),  # a user change naming no user
        (-1, 5, [LoggedChange(v, "none") for v in range(0, 6)]),  # nothing applied yet
        (0, MAX_VERSIONS_TRIMMED + 1, [LoggedChange(v, "none") for v in range(1, MAX_VERSIONS_TRIMMED + 2)]),
        (4, 5, [LoggedChange(5, "user", user_id=uuid.uuid4()) for _ in range(MAX_ROWS_TRIMMED + 1)]),
    ],
)
def test_a_summary_says_everything_when_the_log_cannot_say(
    after: int, upto: int, rows: list[LoggedChange]
) -> None:
    assert summarise(after, upto, rows) == RbacChanges.all_at(upto)


async def test_a_view_read_before_a_clear_is_decided_with_the_names_it_was_read_with() -> None:
    rbac = Rbac()
    ann, bob = await rbac.user("ann"), await rbac.user("bob")
    await rbac.give(ann, await rbac.role(PUBLISH))
    await rbac.give(bob, await rbac.role(BILLING, DELETE))
    rbac.apply()
    before = await rbac.cache.user(ann)  # PUBLISH is permission number 0 of these tables
    rbac.sync.observe(rbac.db.state.rbac.version + 1)  # a gap: new, empty tables
    await rbac.cache.user(bob)  # BILLING is number 0 of the new ones
    assert rbac.cache._tables.permission_ids[BILLING] == before.live[0].permissions[0]
    assert not (await rbac.cache.decide(before, BILLING)).allowed
    assert (await rbac.cache.decide(before, PUBLISH)).allowed
