"""Ended sessions as a feed: the record every server process keeps in memory, and the
revocation feed peers subscribe to (services/ended_sessions.py).

- session_revocations: one row per ended session, numbered by session_revocation_seq.
  A trigger on sessions writes it whenever revoked_at is set (or a live session is
  deleted), whichever code path did it, in the same transaction. The counter row is
  updated under its row lock, so numbers commit in order: a reader that has seen
  number N has seen everything below N, and a cursor is exact.
- NOTIFY identity_sessions carries the new number at commit.
- session_state_leases: as rbac_cache_leases for the permission cache. A server process
  answers token checks from memory only while it holds a lease, and renews it only after
  loading every revocation up to the current number; a writer returns once every live
  lease has acknowledged its number (or lapsed).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE session_revocation_seq (
    id  boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq bigint NOT NULL
);
INSERT INTO session_revocation_seq (id, seq) VALUES (true, 0);

CREATE TABLE session_revocations (
    seq        bigint PRIMARY KEY,
    session_id uuid NOT NULL,
    user_id    uuid NOT NULL,
    ended_at   timestamptz NOT NULL,
    reason     text NOT NULL DEFAULT ''
);
CREATE INDEX session_revocations_ended_idx ON session_revocations (ended_at);

CREATE TABLE session_state_leases (
    id            uuid PRIMARY KEY,
    acked_seq     bigint NOT NULL,
    expires_at    timestamptz NOT NULL,
    host          text NOT NULL DEFAULT '',
    pid           integer,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION session_record_revocation() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    next_seq bigint;
    ended    record;
BEGIN
    IF TG_OP = 'DELETE' THEN
        ended := OLD;
    ELSE
        ended := NEW;
    END IF;
    UPDATE session_revocation_seq SET seq = seq + 1 RETURNING seq INTO next_seq;
    INSERT INTO session_revocations (seq, session_id, user_id, ended_at, reason)
    VALUES (next_seq, ended.id, ended.user_id, coalesce(ended.revoked_at, now()),
            coalesce(ended.revoked_reason, CASE WHEN TG_OP = 'DELETE' THEN 'deleted' ELSE '' END));
    PERFORM pg_notify('identity_sessions', next_seq::text);
    RETURN NULL;
END $$;

CREATE TRIGGER sessions_revoked_feed
    AFTER UPDATE OF revoked_at ON sessions FOR EACH ROW
    WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION session_record_revocation();
CREATE TRIGGER sessions_deleted_feed
    AFTER DELETE ON sessions FOR EACH ROW
    WHEN (OLD.revoked_at IS NULL)
    EXECUTE FUNCTION session_record_revocation();
"""

DOWNGRADE = """
DROP TRIGGER IF EXISTS sessions_deleted_feed ON sessions;
DROP TRIGGER IF EXISTS sessions_revoked_feed ON sessions;
DROP FUNCTION IF EXISTS session_record_revocation();
DROP TABLE IF EXISTS session_state_leases;
DROP TABLE IF EXISTS session_revocations;
DROP TABLE IF EXISTS session_revocation_seq;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
