"""The permission cache, its tables and the change log's rules, held to what mutation
testing (`make mutate`) showed no other test pinned: each test names the behaviour it
protects. The cache runs over the fakes, as in test_permission_invalidation_fast.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from identity.domain.errors import BackendUnavailable
from identity.domain.observer import NOOP, CacheEvent
from identity.domain.permissions import (
    WILDCARD,
    DecisionReason,
    RoleGrants,
    ServiceKey,
    UserGrants,
)
from identity.domain.rbac_changes import (
    MAX_ROWS_TRIMMED,
    MAX_VERSIONS_TRIMMED,
    LoggedChange,
    RbacChanges,
    readable,
    summarise,
)
from identity.security import opaque
from identity.services import authz_sync, permission_tables
from identity.services.authz_sync import RbacSync
from identity.services.permission_cache import CheckCaller
from identity.services.permission_tables import Tables, User, decide, pack_user, user_grants, user_key
from tests.fakes import FakeChangeLog, FakeChannel, FakeDatabase, FakeRoles, FrozenClock
from tests.unit.rbac_harness import Rbac as RbacHarness
from tests.unit.rbac_harness import fields

PUBLISH = "catalog.films.publish"
DELETE = "catalog.films.delete"
ADMIN = "iam.users.admin"


class Events:
    """An observer that records the permission cache's events (the hit-rate metrics)."""

    def __init__(self) -> None:
        self.seen: list[CacheEvent] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(NOOP, name)

    def permission_cache(self, event: CacheEvent) -> None:
        self.seen.append(event)


class Rbac(RbacHarness):
    def __init__(self) -> None:
        self.events = Events()
        super().__init__(observer=self.events)  # type: ignore[arg-type]


def _hold_first(monkeypatch: Any, method: str) -> tuple[asyncio.Event, asyncio.Event]:
    """Makes the first call of FakeRoles.`method` read, then wait for `release`."""
    read, release = asyncio.Event(), asyncio.Event()
    original = getattr(FakeRoles, method)

    async def held(self: FakeRoles, *args: Any) -> Any:
        result = await original(self, *args)
        if not read.is_set():
            read.set()
            await release.wait()
        return result

    monkeypatch.setattr(FakeRoles, method, held)
    return read, release


async def test_a_role_refill_across_a_clear_never_resolves_old_role_numbers_in_new_tables(
    monkeypatch: Any,
) -> None:
    rbac = Rbac()
    ann, bob = await rbac.user("ann"), await rbac.user("bob")
    editors, admins = await rbac.role(PUBLISH), await rbac.role(ADMIN)
    await rbac.give(ann, editors)
    await rbac.give(bob, admins)
    rbac.apply()
    await rbac.cache.user(ann)  # editors is role number 0 of these tables
    await rbac.set_permissions(editors, DELETE)
    rbac.apply()  # editors out of the tables: ann's next read refills that role only
    read, release = _hold_first(monkeypatch, "role_grants")
    refill = asyncio.ensure_future(rbac.cache.user(ann))
    await read.wait()
    rbac.state.version += 1  # a version the log does not name: every table replaced
    rbac.apply()
    await rbac.cache.user(bob)  # admins is role number 0 of the new tables
    release.set()
    view = await refill
    assert [role.name for role in view.live] == [rbac.state.roles[editors].name]
    assert not (await rbac.cache.decide(view, ADMIN)).allowed


# -- the cache: views, decisions, grants ---------------------------------------------------


async def test_a_view_names_the_user_it_was_read_for_on_every_path(monkeypatch: Any) -> None:
    rbac = Rbac()
    ann, nobody = await rbac.user("ann"), uuid.uuid4()
    editors = await rbac.role(PUBLISH)
    await rbac.give(ann, editors)
    rbac.apply()
    assert (await rbac.cache.user(ann)).user_id == ann  # read
    assert (await rbac.cache.user(ann)).user_id == ann  # from memory
    rbac.clock.advance(timedelta(hours=2))  # the lease lapsed: renewed, then from memory
    assert (await rbac.cache.user(ann)).user_id == ann
    await rbac.set_permissions(editors, DELETE)
    rbac.apply()
    assert (await rbac.cache.user(ann)).user_id == ann  # its role read again
    assert (await rbac.cache.user(nobody)).user_id == nobody  # unknown


async def test_an_unknown_user_is_refused_as_unknown_and_holds_nothing() -> None:
    rbac = Rbac()
    nobody = uuid.uuid4()
    assert await rbac.decision(nobody, PUBLISH) == (PUBLISH, False, DecisionReason.USER_UNKNOWN, ())
    assert await rbac.cache.grants(nobody) == UserGrants(nobody, False, False, {}, frozenset(), None)


async def test_a_disabled_users_grants_say_disabled_when_answered_from_memory_too() -> None:
    rbac = Rbac()
    ann = await rbac.user("ann")
    await rbac.give(ann, await rbac.role(PUBLISH))
    async with rbac.db.transaction() as uow:
        await uow.users.set_disabled(ann, True)
    rbac.apply()
    assert (await rbac.cache.grants(ann)).disabled
    reads = rbac.state.snapshots
    grants = await rbac.cache.grants(ann)
    assert rbac.state.snapshots == reads  # from memory
    assert grants == UserGrants(ann, True, True, {}, frozenset(), None)


async def test_users_holding_one_role_share_its_one_entry() -> None:
    rbac = Rbac()
    ann, bob = await rbac.user("ann"), await rbac.user("bob")
    editors = await rbac.role(PUBLISH)
    await rbac.give(ann, editors)
    await rbac.give(bob, editors)
    rbac.apply()
    assert (await rbac.cache.user(ann)).live[0] is (await rbac.cache.user(bob)).live[0]


async def test_a_direct_grant_is_decided_without_reading_the_catalogue() -> None:
    rbac = Rbac()
    ann = await rbac.user("ann")
    editors = await rbac.role(PUBLISH)
    await rbac.give(ann, editors)
    rbac.apply()
    assert await rbac.decision(ann, PUBLISH) == (PUBLISH, True, DecisionReason.GRANTED, (rbac.name(editors),))
    assert rbac.state.catalogue_reads == 0


async def test_decisions_that_need_the_catalogue_name_the_reason_and_every_granting_role() -> None:
    rbac = Rbac()
    ann, root = await rbac.user("ann"), await rbac.user("root")
    editors, lapsed, everything = await rbac.role(PUBLISH), await rbac.role(DELETE), await rbac.role(WILDCARD)
    await rbac.role(ADMIN)
    await rbac.give(ann, editors)
    await rbac.give_until(ann, lapsed, 30)
    await rbac.give(root, editors)
    await rbac.give(root, everything)
    rbac.apply()
    await rbac.cache.user(ann)
    rbac.clock.advance(timedelta(seconds=30))  # ann's `lapsed` assignment has expired
    assert await rbac.decision(ann, DELETE) == (DELETE, False, DecisionReason.ASSIGNMENT_EXPIRED, ())
    assert await rbac.decision(ann, ADMIN) == (ADMIN, False, DecisionReason.NOT_GRANTED, ())
    assert await rbac.decision(ann, "no.such.thing") == (
        "no.such.thing",
        False,
        DecisionReason.NO_SUCH_PERMISSION,
        (),
    )
    both = tuple(sorted((rbac.name(editors), rbac.name(everything))))
    assert await rbac.decision(root, PUBLISH) == (PUBLISH, True, DecisionReason.GRANTED, both)
    assert await rbac.decision(root, ADMIN) == (ADMIN, True, DecisionReason.GRANTED, (rbac.name(everything),))


async def test_a_cold_refusal_of_an_expired_assignment_says_expired() -> None:
    rbac = Rbac()
    ann = await rbac.user("ann")
    lapsed = await rbac.role(DELETE)
    await rbac.role(PUBLISH)
    async with rbac.db.transaction() as uow:
        await uow.roles.assign(ann, lapsed, rbac.clock.now() - timedelta(seconds=1), None)
    rbac.apply()
    assert rbac.cache._catalogue is None  # decided with the catalogue read for it
    assert await rbac.decision(ann, DELETE) == (DELETE, False, DecisionReason.ASSIGNMENT_EXPIRED, ())
    assert await rbac.decision(ann, PUBLISH) == (PUBLISH, False, DecisionReason.NOT_GRANTED, ())


async def test_at_the_instant_the_lease_ends_the_cached_catalogue_is_trusted_only_after_renewal() -> None:
    rbac = Rbac()
    ann = await rbac.user("ann")
    await rbac.give(ann, await rbac.role(PUBLISH))
    await rbac.role(DELETE)
    rbac.apply()
    view = await rbac.cache.user(ann)
    await rbac.cache.catalogue()
    reads = rbac.state.catalogue_reads
    rbac.clock.advance(timedelta(seconds=rbac.sync.lease_until - rbac.clock.monotonic()))
    assert not (await rbac.cache.decide(view, DELETE)).allowed
    assert rbac.sync.revalidations == 1  # renewed, then the cached catalogue answered
    assert rbac.state.catalogue_reads == reads


async def test_after_a_lapsed_lease_is_renewed_a_cached_user_is_answered_from_memory() -> None:
    rbac = Rbac()
    ann = await rbac.user("ann")
    await rbac.give(ann, await rbac.role(PUBLISH))
    rbac.apply()
    await rbac.cache.user(ann)
    users, roles = rbac.state.snapshots, rbac.state.role_reads
    rbac.clock.advance(timedelta(hours=2))
    view = await rbac.cache.user(ann)
    assert rbac.sync.revalidations == 1
    assert (rbac.state.snapshots, rbac.state.role_reads) == (users, roles)
    assert view.user_id == ann and len(view.live) == 1


async def test_the_cache_reports_each_hit_miss_and_invalidation() -> None:
    rbac = Rbac()
    ann = await rbac.user("ann")
    editors = await rbac.role(PUBLISH)
    await rbac.give(ann, editors)
    rbac.apply()
    rbac.events.seen.clear()
    await rbac.cache.user(ann)  # read
    await rbac.cache.user(ann)  # from memory
    assert rbac.cache.known_for_user(str(ann), PUBLISH) is not None
    await rbac.set_permissions(editors, DELETE)
    rbac.apply()
    await rbac.cache.user(ann)  # its role read again
    rbac.sync.listening = False
    rbac.clock.advance(timedelta(hours=2))  # no lease, none to be had: read through
    await rbac.cache.user(ann)
    hit, miss, invalidation = CacheEvent.HIT, CacheEvent.MISS, CacheEvent.INVALIDATION
    assert rbac.events.seen == [miss, hit, hit, invalidation, miss, miss]


async def test_a_refill_reads_only_the_changed_role_of_a_user_holding_several() -> None:
    rbac = Rbac()
    ann = await rbac.user("ann")
    editors, billing = await rbac.role(PUBLISH), await rbac.role(ADMIN)
    await rbac.give(ann, editors)
    await rbac.give(ann, billing)
    rbac.apply()
    await rbac.cache.user(ann)
    users, roles = rbac.state.snapshots, rbac.state.role_reads
    await rbac.set_permissions(editors, DELETE)
    rbac.apply()
    assert (await rbac.decision(ann, DELETE))[1] and (await rbac.decision(ann, ADMIN))[1]
    assert rbac.state.snapshots == users and rbac.state.role_reads == roles + 1


async def test_a_refill_read_before_a_later_change_still_answers_without_reading_the_user(
    monkeypatch: Any,
) -> None:
    rbac = Rbac()
    ann = await rbac.user("ann")
    editors = await rbac.role(PUBLISH)
    await rbac.give(ann, editors)
    rbac.apply()
    await rbac.cache.user(ann)
    await rbac.set_permissions(editors, DELETE)
    rbac.apply()
    users = rbac.state.snapshots
    read, release = _hold_first(monkeypatch, "role_grants")
    refill = asyncio.ensure_future(rbac.cache.user(ann))
    await read.wait()
    rbac.log("keys")  # applied meanwhile: the role read is not kept, but may answer this call
    rbac.apply()
    release.set()
    view = await refill
    assert [role.name for role in view.live] == [rbac.name(editors)]
    assert (await rbac.cache.decide(view, DELETE)).allowed
    assert rbac.state.snapshots == users


async def test_a_refill_keeps_the_users_expired_assignments() -> None:
    rbac = Rbac()
    ann = await rbac.user("ann")
    editors, lapsed = await rbac.role(PUBLISH), await rbac.role(DELETE)
    await rbac.give(ann, editors)
    async with rbac.db.transaction() as uow:
        await uow.roles.assign(ann, lapsed, rbac.clock.now() - timedelta(seconds=1), None)
    rbac.apply()
    await rbac.cache.user(ann)
    await rbac.set_permissions(editors, PUBLISH, ADMIN)
    rbac.apply()
    users = rbac.state.snapshots
    assert await rbac.decision(ann, DELETE) == (DELETE, False, DecisionReason.ASSIGNMENT_EXPIRED, ())
    assert rbac.state.snapshots == users  # refilled, not read again


async def test_a_role_changed_twice_before_anyone_reads_it_again() -> None:
    rbac = Rbac()
    ann = await rbac.user("ann")
    editors = await rbac.role(PUBLISH)
    await rbac.give(ann, editors)
    rbac.apply()
    await rbac.cache.user(ann)
    await rbac.set_permissions(editors, DELETE)
    rbac.apply()
    await rbac.set_permissions(editors, ADMIN)
    rbac.apply()  # the role is no longer in the tables: nothing to take out
    assert (await rbac.decision(ann, ADMIN))[1] and not (await rbac.decision(ann, DELETE))[1]


async def test_a_service_key_change_forgets_the_keys_and_checks_go_on() -> None:
    rbac = Rbac()
    ann = await rbac.user("ann")
    await rbac.give(ann, await rbac.role(PUBLISH))
    secret = opaque.new_secret("sk_")
    rbac.state.service_keys[opaque.digest(secret)] = ServiceKey(uuid.uuid4(), "films", rbac.clock.now())
    rbac.apply()
    assert await rbac.cache.service_caller(secret) == CheckCaller(service="films")
    await rbac.cache.user(ann)
    assert rbac.cache.known(secret, str(ann), PUBLISH) is not None
    rbac.log("keys")
    rbac.apply()
    assert rbac.cache.known(secret, str(ann), PUBLISH) is None  # the key is read again first
    assert await rbac.cache.service_caller(secret) == CheckCaller(service="films")
    assert rbac.cache.known(secret, str(ann), PUBLISH) is not None


async def test_cold_loads_of_different_users_at_once_are_never_shared() -> None:
    rbac = Rbac()
    ann, bob = await rbac.user("ann"), await rbac.user("bob")
    editors, admins = await rbac.role(PUBLISH), await rbac.role(ADMIN)
    await rbac.give(ann, editors)
    await rbac.give(bob, admins)
    rbac.apply()
    ann_view, bob_view = await asyncio.gather(rbac.cache.user(ann), rbac.cache.user(bob))
    assert [role.name for role in ann_view.live] == [rbac.name(editors)]
    assert [role.name for role in bob_view.live] == [rbac.name(admins)]


async def test_refills_of_different_users_at_once_read_each_missing_role_once() -> None:
    rbac = Rbac()
    ann, bob = await rbac.user("ann"), await rbac.user("bob")
    editors, admins = await rbac.role(PUBLISH), await rbac.role(ADMIN)
    await rbac.give(ann, editors)
    await rbac.give(bob, admins)
    rbac.apply()
    await rbac.cache.user(ann)
    await rbac.cache.user(bob)
    await rbac.set_permissions(editors, DELETE)
    await rbac.set_permissions(admins, ADMIN, PUBLISH)
    rbac.apply()
    users, roles = rbac.state.snapshots, rbac.state.role_reads
    await asyncio.gather(rbac.cache.user(ann), rbac.cache.user(bob))
    assert rbac.state.snapshots == users and rbac.state.role_reads == roles + 2


# -- the tables ------------------------------------------------------------------------


def _entry(tables: Tables, name: str, *permissions: str) -> permission_tables.RoleEntry:
    return tables.role_entry(RoleGrants(uuid.uuid4(), name, tuple(permissions)))


def test_the_table_decision_names_its_reason_and_granting_roles() -> None:
    tables = Tables()
    editors, root, lapsed = (
        _entry(tables, "editors", PUBLISH),
        _entry(tables, "root", WILDCARD),
        _entry(tables, "lapsed", DELETE),
    )
    catalogue = frozenset({PUBLISH, DELETE, ADMIN})

    def check(permission: str, live: tuple[Any, ...], expired: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        decision = decide(permission, live, expired, tables.permission_ids.get(permission), catalogue)
        assert decision is not None
        return fields(decision)

    assert check(PUBLISH, (editors,)) == (PUBLISH, True, DecisionReason.GRANTED, ("editors",))
    assert check(ADMIN, (root,)) == (ADMIN, True, DecisionReason.GRANTED, ("root",))
    assert check(PUBLISH, (editors, root)) == (PUBLISH, True, DecisionReason.GRANTED, ("editors", "root"))
    assert check("x.y.z", (root,)) == ("x.y.z", False, DecisionReason.NO_SUCH_PERMISSION, ())
    assert check(DELETE, (editors,), (lapsed,)) == (DELETE, False, DecisionReason.ASSIGNMENT_EXPIRED, ())
    assert check(ADMIN, (editors,), (lapsed,)) == (ADMIN, False, DecisionReason.NOT_GRANTED, ())
    assert decide(ADMIN, (root,), (), None, None) is None  # a wildcard grant needs the catalogue


def test_a_role_with_many_permissions_carries_each_of_them() -> None:
    tables = Tables()
    names = [f"app.area{i}.read" for i in range(permission_tables._SET_ABOVE + 1)]
    big = _entry(tables, "big", *names)
    assert all(big.carries(tables.permission(name)) for name in names)
    assert not big.carries(tables.permission(ADMIN)) and not big.carries(None)


def test_grants_of_a_cached_user_name_their_roles_and_expired_permissions() -> None:
    tables = Tables()
    editors, lapsed = _entry(tables, "editors", PUBLISH), _entry(tables, "lapsed", DELETE)
    user_id = uuid.uuid4()
    assert user_grants(user_id, True, False, (editors,), (lapsed,)) == UserGrants(
        user_id, True, False, {PUBLISH: ("editors",)}, frozenset({DELETE}), None
    )


def test_a_user_id_with_any_dash_replaced_is_left_to_the_full_parser() -> None:
    text = str(uuid.uuid4())
    for position in (8, 13, 18, 23):
        assert user_key(text[:position] + "a" + text[position + 1 :]) is None


def test_only_records_read_before_a_bulk_change_to_one_of_their_roles_are_stale() -> None:
    tables = Tables()
    tables.members_changed[1] = 7
    assert tables.stale(User(pack_user(6, 1e9, False, [1], [])))
    assert tables.stale(User(pack_user(6, 1e9, False, [], [1])))
    assert not tables.stale(User(pack_user(7, 1e9, False, [1], [])))  # read at that version
    assert not tables.stale(User(pack_user(0, 1e9, False, [2], [3])))  # other roles


def test_a_record_of_a_size_never_seen_is_unpacked_and_its_layout_kept(monkeypatch: Any) -> None:
    monkeypatch.setattr(permission_tables, "_LAYOUTS", {})
    record = pack_user(9, 2.5, False, [4, 5], [6])
    for _ in range(2):
        user = User(record)
        assert (user.version, user.deadline, user.disabled, user.live, user.expired) == (
            9,
            2.5,
            False,
            (4, 5),
            (6,),
        )
    assert list(permission_tables._LAYOUTS) == [len(record)]


# -- the change log's rules --------------------------------------------------------------


def test_the_log_is_read_from_version_zero_and_up_to_its_limit_behind() -> None:
    assert readable(0, 1)
    assert readable(200, 300)
    assert readable(0, MAX_VERSIONS_TRIMMED)
    assert not readable(0, MAX_VERSIONS_TRIMMED + 1)


def test_exactly_as_many_rows_as_the_limit_are_still_trimmed() -> None:
    users = [uuid.uuid4() for _ in range(MAX_ROWS_TRIMMED)]
    rows = [LoggedChange(5, "user", user_id=user) for user in users]
    assert summarise(4, 5, rows) == RbacChanges(5, users=frozenset(users))


def test_a_row_touches_only_what_its_kind_names() -> None:
    role = uuid.uuid4()
    rows = [LoggedChange(5, "catalogue", role_id=role), LoggedChange(6, "keys", role_id=role)]
    assert summarise(4, 6, rows) == RbacChanges(6, catalogue=True, keys=True)
    assert summarise(4, 5, [LoggedChange(5, "user", role_id=role)]) == RbacChanges.all_at(5)


# -- applying the log (authz_sync) --------------------------------------------------------

TTL = timedelta(seconds=0.3)


class Sync:
    def __init__(self) -> None:
        self.clock = FrozenClock()
        self.db = FakeDatabase(self.clock)
        self.db.state.rbac.version = 5
        self.channel = FakeChannel(self.db)
        self.sync = RbacSync(self.db, self.channel, self.clock, lease_ttl=TTL)  # type: ignore[arg-type]
        self.applied: list[RbacChanges] = []
        self.sync.on_change(self.applied.append)

    def bump(self, *rows: LoggedChange) -> int:
        state = self.db.state.rbac
        state.version += 1
        state.changes += [LoggedChange(state.version, row.kind, row.role_id, row.user_id) for row in rows]
        return state.version


@pytest.fixture
async def sync(monkeypatch: Any) -> AsyncIterator[Sync]:
    monkeypatch.setattr(authz_sync, "_RECONNECT_DELAY", 0.05)
    monkeypatch.setattr(authz_sync, "_MAX_RECONNECT_DELAY", 0.5)
    made = Sync()
    yield made
    await made.sync.stop()


async def _until(condition: Any) -> None:
    for _ in range(800):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


async def test_a_catch_up_through_the_pool_hands_over_only_what_the_log_names(sync: Sync) -> None:
    sync.sync.observe(5)
    await sync.sync.catch_up()
    ann = uuid.uuid4()
    sync.sync.observe(sync.bump(LoggedChange(0, "user", user_id=ann)))
    await sync.sync.catch_up()
    assert sync.applied[-1] == RbacChanges(6, users=frozenset({ann}))


@pytest.mark.parametrize("over_the_listening_connection", [False, True])
async def test_a_catch_up_reads_the_limit_of_rows_and_one_more_at_most(
    sync: Sync, monkeypatch: Any, over_the_listening_connection: bool
) -> None:
    read: list[int] = []
    original = FakeChangeLog.between

    async def between(self: FakeChangeLog, after: int, upto: int, limit: int) -> list[LoggedChange]:
        rows = await original(self, after, upto, limit)
        read.append(len(rows))
        return rows

    monkeypatch.setattr(FakeChangeLog, "between", between)
    changes = FakeChangeLog(sync.db.state) if over_the_listening_connection else None
    sync.sync.observe(5)
    await sync.sync.catch_up(changes)
    users = [uuid.uuid4() for _ in range(MAX_ROWS_TRIMMED)]
    sync.sync.observe(sync.bump(*[LoggedChange(0, "user", user_id=user) for user in users]))
    await sync.sync.catch_up(changes)
    assert sync.applied[-1] == RbacChanges(6, users=frozenset(users))  # every row read, none missed
    sync.sync.observe(sync.bump(*[LoggedChange(0, "user", user_id=user) for user in users + users[:5]]))
    await sync.sync.catch_up(changes)
    assert sync.applied[-1] == RbacChanges.all_at(7)
    assert read == [MAX_ROWS_TRIMMED, MAX_ROWS_TRIMMED + 1]


async def test_a_reconnecting_listener_catches_up_over_its_own_connection(sync: Sync) -> None:
    await sync.sync.start()
    sync.channel.down = True
    sync.channel.current.lose()
    await _until(lambda: not sync.sync.trusted())
    ann = uuid.uuid4()
    sync.bump(LoggedChange(0, "user", user_id=ann))
    sync.db.failure = BackendUnavailable()  # the pool is out; the listening connection is not
    sync.channel.down = False
    await _until(lambda: sync.sync.trusted())
    assert sync.applied[-1] == RbacChanges(6, users=frozenset({ann}))
