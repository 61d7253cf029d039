"""A unit of work: one connection (inside a transaction for writes) and the
repositories that share it. Repositories never commit on their own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from identity.store.keys import SigningKeyRepository
from identity.store.login_history import LoginHistoryRepository
from identity.store.mfa_tickets import MfaTicketRepository
from identity.store.partitions import PartitionRepository
from identity.store.rbac_changes import RbacChangeRepository
from identity.store.rbac_leases import RbacLeaseRepository
from identity.store.recovery_codes import RecoveryCodeRepository
from identity.store.roles import RoleRepository
from identity.store.service_keys import ServiceKeyRepository
from identity.store.session_revocations import FeedingSessionRepository, SessionRevocationRepository
from identity.store.totp_factors import TotpFactorRepository
from identity.store.user_overview import UserOverviewRepository
from identity.store.users import UserRepository

if TYPE_CHECKING:
    import psycopg


class UnitOfWork:
    def __init__(self, conn: psycopg.AsyncConnection[dict[str, object]]) -> None:
        self.conn = conn
        self.users = UserRepository(conn)
        self.user_overview = UserOverviewRepository(conn)
        self.sessions = FeedingSessionRepository(conn)
        self.session_revocations = SessionRevocationRepository(conn)
        self.login_history = LoginHistoryRepository(conn)
        self.partitions = PartitionRepository(conn)
        self.signing_keys = SigningKeyRepository(conn)
        self.roles = RoleRepository(conn)
        self.service_keys = ServiceKeyRepository(conn)
        self.rbac_leases = RbacLeaseRepository(conn)
        self.rbac_changes = RbacChangeRepository(conn)
        self.totp = TotpFactorRepository(conn)
        self.mfa_tickets = MfaTicketRepository(conn)
        self.recovery_codes = RecoveryCodeRepository(conn)
