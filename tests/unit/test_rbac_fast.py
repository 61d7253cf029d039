"""The escalation rule and the permission cache on the fast tier: in-memory roles and
assignments, a stepped clock, and a lease the test grants or lets lapse."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest

from identity.domain.errors import BackendUnavailable, EscalationDenied, PermissionDenied, ServiceKeyInvalid
from identity.domain.permissions import (
    ROLES_WRITE,
    WILDCARD,
    DecisionReason,
    RolePatch,
    ServiceKey,
)
from identity.security import opaque
from identity.services.permission_cache import CheckCaller
from identity.services.rbac import Actor
from tests.fakes import FakeRoles
from tests.unit.rbac_harness import Rbac

PUBLISH = "catalog.films.publish"
DELETE = "catalog.films.delete"
BILLING = "billing.refund"


# -- the escalation rule ---------------------------------------------------------------


async def test_a_delegate_creates_only_roles_within_what_they_hold() -> None:
    rbac = Rbac()
    actor = await rbac.delegate(PUBLISH)
    made = await rbac.roles.create_role(actor, "editors", "", [PUBLISH])
    assert made.permissions == (PUBLISH,)
    with pytest.raises(EscalationDenied) as denied:
        await rbac.roles.create_role(actor, "refunds", "", [PUBLISH, BILLING])
    assert denied.value.message.endswith(f": {BILLING}")
    assert not [r for r in rbac.db.state.rbac.roles.values() if r.name == "refunds"]


async def test_the_refusal_names_at_most_five_missing_permissions_in_order() -> None:
    rbac = Rbac()
    actor = await rbac.delegate()
    five = [f"p.n{i}" for i in (5, 3, 1, 4, 2)]
    with pytest.raises(EscalationDenied) as denied:
        await rbac.roles.create_role(actor, "five", "", five)
    assert denied.value.message.endswith(": p.n1, p.n2, p.n3, p.n4, p.n5")
    with pytest.raises(EscalationDenied) as more:
        await rbac.roles.create_role(actor, "six", "", [*five, "p.n6"])
    assert more.value.message.endswith(": p.n1, p.n2, p.n3, p.n4, p.n5, ...")


async def test_a_delegate_cannot_shrink_grow_or_rename_a_stronger_role() -> None:
    rbac = Rbac()
    actor = await rbac.delegate(PUBLISH)
    stronger = await rbac.role(PUBLISH, BILLING, name="finance")
    for patch in [
        RolePatch(permissions=(PUBLISH,)),
        RolePatch(name="renamed"),
        RolePatch(description="taken over"),
    ]:
        with pytest.raises(EscalationDenied):
            await rbac.roles.update_role(actor, str(stronger), patch)
    assert rbac.db.state.rbac.roles[stronger].permissions == (BILLING, PUBLISH)
    own = await rbac.role(PUBLISH)
    with pytest.raises(EscalationDenied):
        await rbac.roles.update_role(actor, str(own), RolePatch(permissions=(PUBLISH, BILLING)))
    updated = await rbac.roles.update_role(actor, str(own), RolePatch(name="mine", permissions=(PUBLISH,)))
    assert (updated.name, updated.permissions) == ("mine", (PUBLISH,))


async def test_a_delegate_cannot_delete_assign_or_revoke_a_stronger_role() -> None:
    rbac = Rbac()
    actor = await rbac.delegate(PUBLISH)
    someone = await rbac.user("someone")
    stronger = await rbac.role(PUBLISH, BILLING)
    await rbac.give(someone, stronger)
    with pytest.raises(EscalationDenied):
        await rbac.roles.delete_role(actor, str(stronger), True)
    with pytest.raises(EscalationDenied):
        await rbac.roles.assign_role(actor, str(actor.user_id), str(stronger), None)
    with pytest.raises(EscalationDenied):
        await rbac.roles.revoke_role(actor, str(someone), str(stronger))
    assert (someone, stronger) in rbac.db.state.rbac.assignments
    weaker = await rbac.role(PUBLISH)
    await rbac.roles.assign_role(actor, str(someone), str(weaker), None)
    assert await rbac.roles.revoke_role(actor, str(someone), str(weaker))
    await rbac.roles.delete_role(actor, str(weaker), False)


async def test_an_expired_assignment_holds_nothing_for_the_escalation_rule() -> None:
    rbac = Rbac()
    actor = await rbac.delegate()
    await rbac.give(actor.user_id, await rbac.role(BILLING), rbac.clock.now() + timedelta(minutes=5))  # type: ignore[arg-type]
    await rbac.roles.create_role(actor, "refunds", "", [BILLING])
    rbac.clock.advance(timedelta(minutes=5))
    with pytest.raises(EscalationDenied):
        await rbac.roles.create_role(actor, "refunds-2", "", [BILLING])


async def test_the_escalation_rule_reads_the_actors_grants_from_the_database_not_the_cache() -> None:
    rbac = Rbac()
    actor = await rbac.delegate(PUBLISH)
    await rbac.roles.create_role(actor, "editors", "", [PUBLISH])
    assert (await rbac.cache.grants(actor.user_id)).holds(ROLES_WRITE)  # type: ignore[arg-type]
    async with rbac.db.transaction() as uow:
        await uow.users.set_disabled(actor.user_id, True)  # type: ignore[arg-type]
    # Not yet seen by this process's cache: the admin permission still passes, the rule does not.
    with pytest.raises(EscalationDenied):
        await rbac.roles.create_role(actor, "editors-2", "", [PUBLISH])


async def test_superusers_and_the_operator_are_exempt() -> None:
    rbac = Rbac()
    admin = await rbac.user("admin")
    await rbac.give(admin, await rbac.role(WILDCARD, name="superuser"))
    await rbac.roles.create_role(Actor(admin), "anything", "", [BILLING, PUBLISH])
    await rbac.roles.create_role(Actor.OPERATOR, "operators", "", [DELETE])


async def test_a_user_without_the_admin_permission_is_denied_before_the_rule() -> None:
    rbac = Rbac()
    plain = await rbac.user("plain")
    await rbac.give(plain, await rbac.role(PUBLISH))
    with pytest.raises(PermissionDenied) as denied:
        await rbac.roles.create_role(Actor(plain), "editors", "", [PUBLISH])
    assert not isinstance(denied.value, EscalationDenied)
    assert ROLES_WRITE in denied.value.message


# -- the permission cache --------------------------------------------------------------


async def test_a_users_grants_are_read_once_while_the_lease_holds() -> None:
    rbac = Rbac()
    user = await rbac.user("ann")
    await rbac.give(user, await rbac.role(PUBLISH))
    first = await rbac.cache.grants(user)
    assert first.holds(PUBLISH) and not first.holds(BILLING)
    assert await rbac.cache.grants(user) == first
    assert rbac.snapshots == 1
    assert rbac.cache.users == 1


async def test_an_rbac_change_the_log_cannot_name_drops_every_cached_grant() -> None:
    rbac = Rbac()
    ann, bob = await rbac.user("ann"), await rbac.user("bob")
    role = await rbac.role(PUBLISH)
    await rbac.give(ann, role)
    await rbac.give(bob, role)
    assert (await rbac.cache.grants(ann)).holds(PUBLISH)
    assert (await rbac.cache.grants(bob)).holds(PUBLISH)
    async with rbac.db.transaction() as uow:
        await uow.roles.revoke(ann, role)
    rbac.db.state.rbac.changes.clear()  # a gap: the version's rows are missing
    rbac.sync.observe(rbac.db.state.rbac.version)
    assert rbac.cache.users == 0
    assert not (await rbac.cache.grants(ann)).holds(PUBLISH)
    assert (await rbac.cache.grants(bob)).holds(PUBLISH)
    assert rbac.snapshots == 4


async def test_without_a_lease_every_check_reads_postgresql() -> None:
    rbac = Rbac()
    user = await rbac.user("ann")
    await rbac.cache.grants(user)
    await rbac.give(user, await rbac.role(PUBLISH))
    rbac.sync.lease_until = rbac.clock.monotonic()  # lapses now: the edge itself is not trusted
    rbac.sync.listening = False
    assert (await rbac.cache.grants(user)).holds(PUBLISH)
    assert (await rbac.cache.grants(user)).holds(PUBLISH)
    assert rbac.snapshots == 3
    assert rbac.sync.revalidations >= 2


async def test_a_lapsed_lease_is_renewed_once_and_the_cache_trusted_again() -> None:
    rbac = Rbac()
    user = await rbac.user("ann")
    await rbac.cache.grants(user)
    rbac.clock.advance(timedelta(hours=2))
    await rbac.cache.grants(user)
    await rbac.cache.grants(user)
    assert rbac.sync.revalidations == 1
    assert rbac.snapshots == 1


async def test_a_grant_is_dropped_when_its_assignment_expires() -> None:
    rbac = Rbac()
    user = await rbac.user("ann")
    await rbac.give(user, await rbac.role(PUBLISH), rbac.clock.now() + timedelta(seconds=60))
    await rbac.give(user, await rbac.role(DELETE), rbac.clock.now() + timedelta(seconds=90))
    assert (await rbac.cache.grants(user)).holds(PUBLISH)
    rbac.clock.advance(timedelta(seconds=59))
    assert (await rbac.cache.grants(user)).holds(PUBLISH)
    assert rbac.snapshots == 1
    rbac.clock.advance(timedelta(seconds=1))
    grants = await rbac.cache.grants(user)
    assert not grants.holds(PUBLISH) and grants.holds(DELETE)
    assert rbac.snapshots == 2


async def test_unknown_users_and_reads_older_than_the_applied_version_are_not_kept() -> None:
    rbac = Rbac()
    stranger = uuid.uuid4()
    assert not (await rbac.cache.grants(stranger)).exists
    await rbac.cache.grants(stranger)
    assert rbac.snapshots == 2
    user = await rbac.user("ann")
    rbac.sync.applied = rbac.db.state.rbac.version + 1  # a newer version applied than the read saw
    await rbac.cache.grants(user)
    await rbac.cache.grants(user)
    assert rbac.snapshots == 4


async def test_a_disabled_user_holds_nothing_and_grants_name_their_user() -> None:
    rbac = Rbac()
    user = await rbac.user("ann")
    await rbac.give(user, await rbac.role(PUBLISH))
    grants = await rbac.cache.grants(user)
    assert grants.user_id == user and grants.holds(PUBLISH)
    async with rbac.db.transaction() as uow:
        await uow.users.set_disabled(user, True)
    rbac.db.state.rbac.version += 1  # disabling bumps the RBAC version
    rbac.sync.observe(rbac.db.state.rbac.version)
    disabled = await rbac.cache.grants(user)
    assert disabled.exists and disabled.disabled and not disabled.holds(PUBLISH)


async def test_the_read_version_is_applied_and_clears_older_entries() -> None:
    rbac = Rbac()
    applied: list[int] = []
    rbac.sync.on_change(lambda changes: applied.append(changes.version))
    user = await rbac.user("ann")
    await rbac.cache.grants(user)
    assert rbac.sync.applied == rbac.db.state.rbac.version
    assert applied == [rbac.db.state.rbac.version]


async def test_the_cache_keeps_at_most_its_size_in_users() -> None:
    rbac = Rbac(max_users=2)
    a, b, c = [await rbac.user(n) for n in ("a", "b", "c")]
    for user in (a, b, c):
        await rbac.cache.grants(user)
    await rbac.cache.grants(c)
    await rbac.cache.grants(b)
    assert rbac.snapshots == 3
    await rbac.cache.grants(a)  # evicted, the oldest
    assert rbac.snapshots == 4
    tiny = Rbac(max_users=0)
    d, e = await tiny.user("d"), await tiny.user("e")
    await tiny.cache.grants(d)
    await tiny.cache.grants(d)
    assert tiny.snapshots == 1  # a size below one still keeps one
    await tiny.cache.grants(e)
    await tiny.cache.grants(d)
    assert tiny.snapshots == 3  # and only one


async def test_concurrent_checks_for_one_cold_user_share_one_read() -> None:
    rbac = Rbac()
    user = await rbac.user("ann")
    results = await asyncio.gather(*(rbac.cache.user(user) for _ in range(5)))
    assert rbac.snapshots == 1 and all(r is results[0] for r in results)
    other = await rbac.user("bob")
    await asyncio.gather(rbac.cache.grants(user), rbac.cache.grants(other))
    assert rbac.snapshots == 2


async def test_a_read_in_flight_across_a_change_is_not_joined_afterwards(monkeypatch: Any) -> None:
    rbac = Rbac()
    user = await rbac.user("ann")
    role = await rbac.role(PUBLISH)
    await rbac.give(user, role)
    rbac.sync.observe(rbac.db.state.rbac.version)
    release = asyncio.Event()
    original = FakeRoles.held_roles

    async def slow(self: FakeRoles, user_id: uuid.UUID) -> Any:
        snapshot = await original(self, user_id)
        await release.wait()
        return snapshot

    monkeypatch.setattr(FakeRoles, "held_roles", slow)
    stale = asyncio.ensure_future(rbac.cache.grants(user))
    await asyncio.sleep(0.01)
    async with rbac.db.transaction() as uow:
        await uow.roles.revoke(user, role)
    rbac.sync.observe(rbac.db.state.rbac.version)
    fresh = asyncio.ensure_future(rbac.cache.grants(user))
    await asyncio.sleep(0.01)
    release.set()
    assert (await stale).holds(PUBLISH)
    assert not (await fresh).holds(PUBLISH)
    assert not (await rbac.cache.grants(user)).holds(PUBLISH)


async def test_a_failed_read_fails_the_check_and_is_not_remembered() -> None:
    rbac = Rbac()
    user = await rbac.user("ann")
    rbac.db.failure = BackendUnavailable()
    for _ in range(2):
        with pytest.raises(BackendUnavailable):
            await rbac.cache.grants(user)
    rbac.db.failure = None
    assert (await rbac.cache.grants(user)).exists


async def test_a_known_decision_is_answered_from_memory_only_while_fresh() -> None:
    rbac = Rbac()
    user = await rbac.user("ann")
    await rbac.give(user, await rbac.role(PUBLISH))
    await rbac.role(DELETE)
    key = await _service_key(rbac, "films")
    assert rbac.cache.known_for_user(str(user), PUBLISH) is None  # not read yet
    await rbac.cache.user(user)
    granted = rbac.cache.known_for_user(str(user), PUBLISH)
    assert granted is not None and granted.allowed and granted.granted_by == (_role_name(rbac, PUBLISH),)
    # A refusal needs the catalogue: not in memory yet, then read once.
    assert rbac.cache.known_for_user(str(user), DELETE) is None
    await rbac.cache.catalogue()
    refused = rbac.cache.known_for_user(str(user), DELETE)
    assert refused is not None and refused.reason is DecisionReason.NOT_GRANTED
    # A name no role carries may be malformed: the full path validates it.
    assert rbac.cache.known_for_user(str(user), "No Such") is None
    assert rbac.cache.known_for_user(str(user), "no.such") is None
    assert rbac.cache.known(key, str(user), PUBLISH) is None  # the key is not known yet
    assert await rbac.cache.service_caller(key) == CheckCaller(service="films")
    assert rbac.cache.known(key, str(user), PUBLISH) is not None
    assert rbac.cache.known(key, str(uuid.uuid4()), PUBLISH) is None
    assert rbac.cache.known("sk_" + "x" * 200, str(user), PUBLISH) is None
    longest = "sk_" + "y" * 125
    rbac.db.state.rbac.service_keys[opaque.digest(longest)] = ServiceKey(
        uuid.uuid4(), "long", rbac.clock.now()
    )
    await rbac.cache.service_caller(longest)
    assert rbac.cache.known(longest, str(user), PUBLISH) is not None
    rbac.sync.lease_until = 0.0
    assert rbac.cache.known(key, str(user), PUBLISH) is None
    assert rbac.cache.known_for_user(str(user), PUBLISH) is None
    rbac.sync.grant_lease()
    assert rbac.cache.known_for_user(str(user), PUBLISH) is not None
    rbac.sync.observe(rbac.sync.applied + 1)  # a version the log does not name
    assert rbac.cache.known_for_user(str(user), PUBLISH) is None
    assert rbac.cache.known(key, str(user), PUBLISH) is None


def _role_name(rbac: Rbac, permission: str) -> str:
    return next(r.name for r in rbac.db.state.rbac.roles.values() if permission in r.permissions)


async def test_a_known_decision_says_what_the_full_path_says() -> None:
    rbac = Rbac()
    user = await rbac.user("ann")
    first, second = await rbac.role(PUBLISH, DELETE), await rbac.role(PUBLISH)
    await rbac.give(user, first)
    await rbac.give(user, second)
    await rbac.give(user, await rbac.role(BILLING), rbac.clock.now() + timedelta(seconds=10))
    rbac.clock.advance(timedelta(seconds=10))
    await rbac.cache.catalogue()
    view = await rbac.cache.user(user)
    for permission in (PUBLISH, DELETE, BILLING):
        known = rbac.cache.known_for_user(str(user), permission)
        full = await rbac.cache.decide(view, permission)
        assert known is not None
        assert (known.allowed, known.reason, known.granted_by) == (full.allowed, full.reason, full.granted_by)
    assert full.reason is DecisionReason.ASSIGNMENT_EXPIRED
    both = rbac.cache.known_for_user(str(user), PUBLISH)
    assert both is not None and both.granted_by == tuple(
        sorted(rbac.db.state.rbac.roles[r].name for r in (first, second))
    )


async def _service_key(rbac: Rbac, name: str, revoked: bool = False) -> str:
    secret = opaque.new_secret("sk_")
    rbac.db.state.rbac.service_keys[opaque.digest(secret)] = ServiceKey(
        uuid.uuid4(), name, rbac.clock.now(), rbac.clock.now() if revoked else None
    )
    return secret


async def test_a_service_key_is_known_only_while_live_and_read_once() -> None:
    rbac = Rbac()
    key = await _service_key(rbac, "films")
    assert await rbac.cache.service_caller(key) == CheckCaller(service="films")
    assert await rbac.cache.service_caller(key) == CheckCaller(service="films")
    assert rbac.db.state.rbac.key_reads == 1
    longest = "sk_" + "x" * 125
    rbac.db.state.rbac.service_keys[opaque.digest(longest)] = ServiceKey(
        uuid.uuid4(), "long", rbac.clock.now()
    )
    assert await rbac.cache.service_caller(longest) == CheckCaller(service="long")
    for bad in [await _service_key(rbac, "old", revoked=True), "sk_unknown", "sk_" + "x" * 126]:
        with pytest.raises(ServiceKeyInvalid):
            await rbac.cache.service_caller(bad)
    reads = rbac.db.state.rbac.key_reads
    with pytest.raises(ServiceKeyInvalid):
        await rbac.cache.service_caller("sk_" + "x" * 200)
    assert rbac.db.state.rbac.key_reads == reads  # refused by its size alone
    rbac.sync.observe(rbac.sync.applied + 1)  # a change (a revocation, say): read again
    rbac.db.state.rbac.version = rbac.sync.applied
    await rbac.cache.service_caller(key)
    assert rbac.db.state.rbac.key_reads == reads + 1
    rbac.clock.advance(timedelta(hours=2))  # lease lapsed: renewed, then trusted
    await rbac.cache.service_caller(key)
    assert rbac.db.state.rbac.key_reads == reads + 1
    rbac.sync.listening = False
    rbac.clock.advance(timedelta(hours=2))
    await rbac.cache.service_caller(key)
    assert rbac.db.state.rbac.key_reads == reads + 2


async def test_a_key_read_older_than_the_applied_version_is_not_kept() -> None:
    rbac = Rbac()
    key = await _service_key(rbac, "films")
    rbac.sync.applied = rbac.db.state.rbac.version + 1
    await rbac.cache.service_caller(key)
    await rbac.cache.service_caller(key)
    assert rbac.db.state.rbac.key_reads == 2


async def test_the_catalogue_is_read_once_per_version_and_lease() -> None:
    rbac = Rbac()
    await rbac.role(PUBLISH)
    first = await rbac.cache.catalogue()
    assert first.permissions == frozenset({PUBLISH})
    assert await rbac.cache.catalogue() is first
    await rbac.role(DELETE)
    rbac.sync.observe(rbac.db.state.rbac.version)
    assert (await rbac.cache.catalogue()).permissions == frozenset({PUBLISH, DELETE})
    assert rbac.db.state.rbac.catalogue_reads == 2
    rbac.sync.listening = False
    rbac.clock.advance(timedelta(hours=2))
    await rbac.cache.catalogue()
    assert rbac.db.state.rbac.catalogue_reads == 3
    rbac.sync.listening = True
    rbac.sync.observe(rbac.db.state.rbac.version + 1)  # applied, not yet read by anyone
    await rbac.cache.catalogue()
    await rbac.cache.catalogue()
    assert rbac.db.state.rbac.catalogue_reads == 5
