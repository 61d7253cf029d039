"""The verified caller of a peer's RPC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class PeerPrincipal:
    user_id: str
    session_id: str
    # RFC 8176: ("pwd",), ("pwd", "otp", "mfa") after a TOTP code, ("pwd", "mfa") after a
    # recovery code.
    amr: tuple[str, ...]
    # When the user last presented credentials (kept across refreshes).
    auth_time: datetime | None
    expires_at: datetime
    token_id: str

    @property
    def mfa(self) -> bool:
        """Did the user pass a second factor in this session?"""
        return "mfa" in self.amr
