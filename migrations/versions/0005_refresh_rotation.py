"""Refresh rotation in one call: rotate_refresh_token().

A refresh ran five statements in a transaction (seven round trips with BEGIN and
COMMIT). The common case, a live token of a live session, is now one function call
in one autocommit round trip; it returns no row when the token is unknown or already
rotated, and the caller then takes the general path (grace window, reuse detection).

The timestamps it writes are the caller's `p_now` (the service's clock), as the general
path's statements are.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ROTATE = """
CREATE FUNCTION rotate_refresh_token(p_token bytea, p_successor bytea, p_now timestamptz, p_idle interval)
RETURNS TABLE (
    rotated boolean, id uuid, user_id uuid, created_at timestamptz, last_used_at timestamptz,
    expires_at timestamptz, ip inet, user_agent text, revoked_at timestamptz, revoked_reason text,
    amr text[], auth_time timestamptz
)
LANGUAGE plpgsql AS $$
DECLARE
    v_session_id uuid;
    s sessions%ROWTYPE;
BEGIN
    -- The row lock serialises concurrent callers; a waiter re-checks rotated_at once the
    -- winner commits and finds no row: exactly one of them rotates.
    SELECT t.session_id INTO v_session_id FROM refresh_tokens t
    WHERE t.token_hash = p_token AND t.rotated_at IS NULL
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT * INTO s FROM sessions WHERE sessions.id = v_session_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    rotated := s.revoked_at IS NULL AND s.expires_at > p_now AND s.last_used_at + p_idle > p_now;
    IF rotated THEN
        UPDATE refresh_tokens SET rotated_at = p_now, replaced_by = p_successor WHERE token_hash = p_token;
        INSERT INTO refresh_tokens (token_hash, session_id) VALUES (p_successor, v_session_id);
        UPDATE sessions SET last_used_at = p_now WHERE sessions.id = v_session_id;
    END IF;
    -- The session as it was before this use, as the general path reads it.
    id := s.id; user_id := s.user_id; created_at := s.created_at; last_used_at := s.last_used_at;
    expires_at := s.expires_at; ip := s.ip; user_agent := s.user_agent;
    revoked_at := s.revoked_at; revoked_reason := s.revoked_reason;
    amr := s.amr; auth_time := s.auth_time;
    RETURN NEXT;
END
$$
"""


def upgrade() -> None:
    op.execute(ROTATE)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS rotate_refresh_token(bytea, bytea, timestamptz, interval)")
