"""The composition root: builds every service from Settings, once, at start-up.
Nothing is created at import time; the server and the CLI both start here."""

from __future__ import annotations

from dataclasses import dataclass

from identity.config import Settings
from identity.domain.clock import Clock, SystemClock
from identity.domain.mfa import MfaPolicy
from identity.domain.observer import NOOP, Observer
from identity.security.passwords import PasswordHasher
from identity.security.secretbox import SecretBox
from identity.security.totp import RecoveryCodeHasher
from identity.services.account import AccountService
from identity.services.auth import AuthService
from identity.services.authz import AuthzService
from identity.services.authz_sync import RbacSync
from identity.services.credentials import CredentialCheck
from identity.services.ended_sessions import EndedSessions
from identity.services.history import HistoryService
from identity.services.keys import KeyService
from identity.services.mfa import MfaService
from identity.services.mfa_challenge import MfaChallenges
from identity.services.mfa_guard import SecondFactorCheck
from identity.services.mfa_login import MfaLogin
from identity.services.paging import PageTokens
from identity.services.partitions import PartitionService
from identity.services.permission_cache import PermissionCache
from identity.services.rbac import RoleService
from identity.services.service_keys import ServiceKeyService
from identity.services.sessions import SessionService
from identity.services.throttle import LoginThrottle
from identity.services.tokens import TokenPolicy, TokenService
from identity.services.user_admin import UserAdminService
from identity.store.database import Database
from identity.store.rbac_channel import RbacChannel
from identity.store.redis import RedisStore
from identity.store.session_revocations import SessionChannel


@dataclass
class Services:
    settings: Settings
    clock: Clock
    db: Database
    redis: RedisStore
    hasher: PasswordHasher
    keys: KeyService
    tokens: TokenService
    auth: AuthService
    page_tokens: PageTokens
    sessions: SessionService
    history: HistoryService
    account: AccountService
    partitions: PartitionService
    rbac_sync: RbacSync
    authz: AuthzService
    roles: RoleService
    service_keys: ServiceKeyService
    user_admin: UserAdminService
    mfa: MfaService
    mfa_login: MfaLogin
    ended_sessions: EndedSessions
    observer: Observer = NOOP

    async def close(self) -> None:
        # Before the pool closes: the lease rows are released through it.
        await self.ended_sessions.stop()
        await self.rbac_sync.stop()
        await self.db.close()
        await self.redis.close()
        self.hasher.close()


def _mfa_policy(settings: Settings) -> MfaPolicy:
    if settings.totp_skew_steps not in (0, 1):
        raise ValueError("IDENTITY_TOTP_SKEW_STEPS must be 0 or 1")
    return MfaPolicy(
        issuer=settings.totp_issuer,
        skew_steps=settings.totp_skew_steps,
        setup_ttl=settings.totp_setup_ttl,
        ticket_ttl=settings.mfa_ticket_ttl,
        ticket_max_failures=settings.mfa_ticket_max_failures,
        failures_per_window=settings.mfa_failures_per_window,
        failure_window=settings.mfa_failure_window,
        lock_threshold=settings.mfa_lock_threshold,
        lock_wait=settings.mfa_lock_wait,
    )


async def build_services(
    settings: Settings, clock: Clock | None = None, observer: Observer = NOOP
) -> Services:
    """Everything, from settings; `clock` is the real time unless a test passes its own;
    `observer` receives metrics and trace events (identity.observability.Telemetry)."""
    clock = clock or SystemClock()
    master_key = settings.require_secret_key()
    mfa_policy = _mfa_policy(settings)
    db = Database(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout=settings.db_timeout.total_seconds(),
        observer=observer,
        connect_timeout=settings.db_connect_timeout.total_seconds(),
        statement_timeout=settings.db_statement_timeout.total_seconds(),
    )
    await db.open()
    redis = RedisStore(settings.redis_url, settings.redis_prefix, observer)
    hasher = PasswordHasher(settings.bcrypt_rounds, settings.hash_concurrency, observer)
    keys = KeyService(
        db,
        SecretBox(master_key, "signing-keys"),
        clock,
        refresh_interval=settings.key_refresh_interval,
        retire_grace=settings.access_token_ttl + settings.key_refresh_interval + settings.clock_skew,
    )
    policy = TokenPolicy(
        issuer=settings.issuer,
        audiences=settings.audiences,
        access_ttl=settings.access_token_ttl,
        clock_skew=settings.clock_skew,
        session_absolute_ttl=settings.session_absolute_ttl,
        session_idle_ttl=settings.session_idle_ttl,
    )
    ended_sessions = EndedSessions(
        db,
        SessionChannel(settings.database_url, connect_timeout=settings.db_timeout.total_seconds()),
        clock,
        lease_ttl=settings.session_state_lease,
        tokens_live=settings.access_token_ttl + settings.clock_skew,
    )
    # Every unit of work that ends a session returns only once all processes refuse it.
    db.after_sessions_ended = ended_sessions.settle
    tokens = TokenService(db, keys, policy, clock, ended=ended_sessions)
    throttle = LoginThrottle(
        redis,
        per_account=settings.login_attempts_per_account,
        per_ip=settings.login_attempts_per_ip,
        window=settings.login_window,
        observer=observer,
    )
    credentials = CredentialCheck(
        db, hasher, throttle, clock, max_failed_logins=settings.max_failed_logins, observer=observer
    )
    auth = AuthService(
        db,
        hasher,
        tokens,
        credentials,
        clock,
        refresh_reuse_grace=settings.refresh_reuse_grace,
        observer=observer,
        mfa=MfaChallenges(db, mfa_policy, clock, observer),
    )
    second_factor = SecondFactorCheck(
        db,
        SecretBox(master_key, "totp-secrets"),
        RecoveryCodeHasher(master_key),
        mfa_policy,
        clock,
        observer,
    )
    page_tokens = PageTokens(master_key)
    rbac_sync = RbacSync(
        db,
        RbacChannel(settings.database_url, connect_timeout=settings.db_timeout.total_seconds()),
        clock,
        lease_ttl=settings.rbac_lease,
        observer=observer,
    )
    permission_cache = PermissionCache(
        db, rbac_sync, clock, max_users=settings.permission_cache_size, observer=observer
    )
    return Services(
        settings=settings,
        clock=clock,
        db=db,
        redis=redis,
        hasher=hasher,
        keys=keys,
        tokens=tokens,
        auth=auth,
        page_tokens=page_tokens,
        sessions=SessionService(db, page_tokens, policy, clock),
        history=HistoryService(db, page_tokens),
        account=AccountService(db, hasher, credentials, policy, clock),
        partitions=PartitionService(
            db,
            clock,
            months_ahead=settings.partition_months_ahead,
            retention_months=settings.login_history_retention_months,
        ),
        rbac_sync=rbac_sync,
        authz=AuthzService(permission_cache, tokens, observer),
        roles=RoleService(db, permission_cache, rbac_sync, tokens, page_tokens, clock),
        service_keys=ServiceKeyService(db, rbac_sync),
        user_admin=UserAdminService(db, hasher, permission_cache, rbac_sync),
        mfa=MfaService(db, credentials, second_factor, policy, clock),
        mfa_login=MfaLogin(db, auth, second_factor, clock, observer),
        ended_sessions=ended_sessions,
        observer=observer,
    )
