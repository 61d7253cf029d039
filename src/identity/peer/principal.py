"""The verified caller of a peer's RPC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class PeerPrincipal:
    user_id: str
    session_id: str
    # RFC 8176: ("pwd",), ("pwd", "otp", "mfa") after a TOTP code, ("pwd", "mfa") after a
    # recovery code.
    amr: tuple[str, ...]
    # Unix seconds (the claims as they are; the datetimes below are made when asked for).
    auth_time_epoch: float | None
    expires_epoch: float
    token_id: str

    @property
    def auth_time(self) -> datetime | None:
        """When the user last presented credentials (kept across refreshes)."""
        return None if self.auth_time_epoch is None else datetime.fromtimestamp(self.auth_time_epoch, UTC)

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.expires_epoch, UTC)

    @property
    def mfa(self) -> bool:
        """Did the user pass a second factor in this session?"""
        return "mfa" in self.amr
