"""TOTP second factor: pending setups, replay and brute-force guards, how a session
authenticated.

- totp_factors: a pending (unconfirmed) secret expires at setup_expires_at; the
  per-account guard against guessing lives on the factor row, so it is durable and
  shared by every server process: wrong codes in the current window, consecutive
  wrong codes, and the time the second factor locked.
- mfa_tickets: the password login a ticket continues (its time is the session's
  auth_time).
- sessions: amr (RFC 8176) and auth_time, written at login and carried into every
  access token of the session, refreshes included.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE totp_factors
    ADD COLUMN setup_expires_at     timestamptz,
    ADD COLUMN window_started_at    timestamptz,
    ADD COLUMN window_failures      integer NOT NULL DEFAULT 0,
    ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN locked_at            timestamptz;

ALTER TABLE mfa_tickets
    ADD COLUMN password_at timestamptz;
CREATE INDEX mfa_tickets_user_idx ON mfa_tickets (user_id);
CREATE INDEX mfa_tickets_expires_idx ON mfa_tickets (expires_at);

CREATE INDEX recovery_codes_user_idx ON recovery_codes (user_id) WHERE used_at IS NULL;

ALTER TABLE sessions
    ADD COLUMN amr       text[] NOT NULL DEFAULT '{pwd}',
    ADD COLUMN auth_time timestamptz;
"""

DOWNGRADE = """
ALTER TABLE sessions DROP COLUMN IF EXISTS auth_time, DROP COLUMN IF EXISTS amr;
DROP INDEX IF EXISTS recovery_codes_user_idx;
DROP INDEX IF EXISTS mfa_tickets_expires_idx;
DROP INDEX IF EXISTS mfa_tickets_user_idx;
ALTER TABLE mfa_tickets DROP COLUMN IF EXISTS password_at;
ALTER TABLE totp_factors
    DROP COLUMN IF EXISTS locked_at,
    DROP COLUMN IF EXISTS consecutive_failures,
    DROP COLUMN IF EXISTS window_failures,
    DROP COLUMN IF EXISTS window_started_at,
    DROP COLUMN IF EXISTS setup_expires_at;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
