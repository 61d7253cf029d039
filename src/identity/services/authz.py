"""CheckPermission, CheckPermissions, ListUserPermissions.

Who may ask: a peer service with a service key (`authorization: Bearer sk_...`), or a
user with their own access token asking about themself. Nobody else gets an answer
about a user. Every answer comes from the permission cache (permission_cache.py says
when an entry may be used) through one path, `decide`."""

from __future__ import annotations

from uuid import UUID

from identity.domain.errors import (
    InvalidArgument,
    PermissionDenied,
    Reason,
    TokenMissing,
    Unauthenticated,
    UserNotFound,
)
from identity.domain.observer import NOOP, Observer
from identity.domain.permissions import (
    MAX_BATCH_CHECKS,
    Decision,
    DecisionReason,
    EffectivePermission,
    PermissionCheck,
    Subject,
    is_valid_permission,
    validate_permission,
)
from identity.services.permission_cache import CheckCaller, PermissionCache, UserView
from identity.services.tokens import TokenService

SERVICE_KEY_PREFIX = "sk_"

# What a check is asked with: a bearer credential (service key or access token), or a
# caller the transport already authenticated (a peer's client certificate).
Credential = str | CheckCaller | None


class _SubjectInvalid(Exception):
    def __init__(self, reason: DecisionReason) -> None:
        self.reason = reason


class AuthzService:
    def __init__(self, cache: PermissionCache, tokens: TokenService, observer: Observer = NOOP) -> None:
        self._observer = observer
        self._cache = cache
        self._tokens = tokens
        self.checks = 0
        self.allowed = 0

    async def caller(self, credential: Credential) -> CheckCaller:
        if isinstance(credential, CheckCaller):
            return credential
        if not credential:
            raise TokenMissing("a service key or an access token is required")
        if credential.startswith(SERVICE_KEY_PREFIX):
            return await self._cache.service_caller(credential)
        principal = await self._tokens.authenticate(credential)
        return CheckCaller(user_id=principal.user_id)

    def cached(self, credential: Credential, user_id: str, permission: str) -> Decision | None:
        """The common case answered from memory: a peer's service key asking again about a
        user id and a permission it has asked about before. None: call `check`."""
        if not isinstance(credential, str) or not user_id or not credential.startswith(SERVICE_KEY_PREFIX):
            return None
        decision = self._cache.known(credential, user_id, permission)
        if decision is not None:
            self._count(decision)
        return decision

    async def check(self, credential: Credential, subject: Subject, permission: str) -> Decision:
        caller = await self.caller(credential)
        if caller.service is not None and subject.user_id and not subject.access_token:
            # The common case: a peer asks about a user it has asked about before.
            known = self._cache.known_for_user(subject.user_id, permission)
            if known is not None:
                return self._count(known)
        validate_permission(permission)
        try:
            user_id = await self._subject(caller, subject, strict=True)
        except _SubjectInvalid as invalid:
            return self._count(Decision(permission, False, invalid.reason))
        return self._count(await self.decide(await self._cache.user(user_id), permission))

    async def check_many(self, credential: Credential, checks: list[PermissionCheck]) -> list[Decision]:
        if len(checks) > MAX_BATCH_CHECKS:
            raise InvalidArgument(
                "checks", f"at most {MAX_BATCH_CHECKS} checks per call", reason=Reason.TOO_MANY_ITEMS
            )
        caller = await self.caller(credential)
        # Each distinct subject is resolved (and its grants read) once per batch.
        resolved: dict[Subject, UserView | DecisionReason] = {}
        for item in checks:
            if item.subject not in resolved:
                try:
                    user_id = await self._subject(caller, item.subject, strict=False)
                except _SubjectInvalid as invalid:
                    resolved[item.subject] = invalid.reason
                else:
                    resolved[item.subject] = await self._cache.user(user_id)
        decisions: list[Decision] = []
        for item in checks:
            target = resolved[item.subject]
            if not is_valid_permission(item.permission):
                decision = Decision(item.permission, False, DecisionReason.PERMISSION_INVALID)
            elif isinstance(target, DecisionReason):
                decision = Decision(item.permission, False, target)
            else:
                decision = await self.decide(target, item.permission)
            decisions.append(self._count(decision))
        return decisions

    async def list_permissions(self, credential: Credential, subject: Subject) -> list[EffectivePermission]:
        caller = await self.caller(credential)
        try:
            user_id = await self._subject(caller, subject, strict=True)
        except _SubjectInvalid as invalid:
            if invalid.reason is DecisionReason.TOKEN_INVALID:
                raise Unauthenticated("the subject's access token is invalid") from None
            raise UserNotFound() from None
        grants = await self._cache.grants(user_id)
        if not grants.exists:
            raise UserNotFound()
        return grants.effective()

    async def decide(self, view: UserView, permission: str) -> Decision:
        """The one decision path (the cache's), for a well-formed permission name."""
        return await self._cache.decide(view, permission)

    async def _subject(self, caller: CheckCaller, subject: Subject, *, strict: bool) -> UUID:
        """The user a subject names. Malformed input is INVALID_ARGUMENT for a single
        check (strict) and an item-level answer in a batch."""
        if subject.access_token:
            try:
                user_id = (await self._tokens.validate(subject.access_token)).subject
            except Unauthenticated:
                raise _SubjectInvalid(DecisionReason.TOKEN_INVALID) from None
        elif subject.user_id:
            try:
                user_id = UUID(subject.user_id)
            except ValueError:
                if strict:
                    raise InvalidArgument("subject.user_id", "subject.user_id must be a UUID") from None
                raise _SubjectInvalid(DecisionReason.USER_UNKNOWN) from None
        else:
            if strict:
                raise InvalidArgument("subject", "subject (user_id or access_token) is required")
            raise _SubjectInvalid(DecisionReason.USER_UNKNOWN)
        if caller.user_id is not None and caller.user_id != user_id:
            raise PermissionDenied("a user may only ask about themself")
        return user_id

    def _count(self, decision: Decision) -> Decision:
        self._observer.decision(decision.reason)
        self.checks += 1
        if decision.allowed:
            self.allowed += 1
        return decision
