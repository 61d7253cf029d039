"""One account at a glance for `identity users show`: state, lockout counter, MFA,
roles with their expiry, and the latest login attempts (sessions come from SessionService)."""

from __future__ import annotations

from dataclasses import dataclass

from identity.domain.errors import UserNotFound
from identity.domain.models import AccountFacts, LoginEvent, User
from identity.domain.paging import TimeRange
from identity.domain.permissions import RoleAssignment
from identity.store.database import Database


@dataclass(frozen=True)
class UserOverview:
    user: User
    facts: AccountFacts
    roles: list[RoleAssignment]
    last_logins: list[LoginEvent]


async def load_overview(db: Database, user: User, last_logins: int) -> UserOverview:
    async with db.reader() as uow:
        facts = await uow.user_overview.facts(user.id)
        roles = await uow.roles.user_assignments(user.id)
        logins = await uow.login_history.page_for_user(
            user.id, span=TimeRange(), after=None, limit=last_logins
        )
    if facts is None:  # deleted between the two reads
        raise UserNotFound("no user with this login")
    return UserOverview(user, facts, roles, logins)
