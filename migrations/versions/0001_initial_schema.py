"""Initial schema: the whole mission's tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Monthly login_history partitions created at migration time, from the current month on.
# `identity partitions ensure` (run by every server at start-up and daily) keeps them ahead.
MONTHS_AHEAD = 3

SCHEMA = """
CREATE TABLE users (
    id              uuid PRIMARY KEY,
    login           text NOT NULL,
    login_canonical text NOT NULL,
    email           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    disabled_at     timestamptz,
    -- Consecutive failed logins; bumped atomically before the hash is checked.
    failed_logins   integer NOT NULL DEFAULT 0,
    CONSTRAINT users_login_canonical_key UNIQUE (login_canonical)
);

CREATE TABLE password_credentials (
    user_id       uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    password_hash bytea NOT NULL,
    changed_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE permissions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (length(name) <= 128),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE roles (
    id             uuid PRIMARY KEY,
    name           text NOT NULL,
    name_canonical text NOT NULL UNIQUE,
    description    text NOT NULL DEFAULT '',
    builtin        boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE role_permissions (
    role_id       uuid NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    permission_id bigint NOT NULL REFERENCES permissions(id) ON DELETE RESTRICT,
    PRIMARY KEY (role_id, permission_id)
);
CREATE INDEX role_permissions_permission_idx ON role_permissions (permission_id);

CREATE TABLE user_roles (
    user_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role_id    uuid NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    expires_at timestamptz,
    granted_by uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX user_roles_role_idx ON user_roles (role_id);

-- Bumped by every write that can change anyone's permissions; servers compare it
-- to decide whether their permission caches are still exact.
CREATE TABLE rbac_version (
    id      boolean PRIMARY KEY DEFAULT true CHECK (id),
    version bigint NOT NULL DEFAULT 0
);
INSERT INTO rbac_version (id, version) VALUES (true, 0);

CREATE TABLE sessions (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_used_at   timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    ip             inet,
    user_agent     text NOT NULL DEFAULT '',
    revoked_at     timestamptz,
    revoked_reason text
);
CREATE INDEX sessions_user_live_idx ON sessions (user_id, created_at DESC) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Set once, when the token is exchanged; a second presentation is reuse.
    rotated_at timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

CREATE TABLE totp_factors (
    user_id          uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    secret_encrypted bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    confirmed_at     timestamptz,
    -- Highest 30-second step accepted; a step is never accepted twice.
    last_used_step   bigint NOT NULL DEFAULT 0
);

CREATE TABLE recovery_codes (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id   uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash bytea NOT NULL,
    used_at   timestamptz,
    CONSTRAINT recovery_codes_user_hash_key UNIQUE (user_id, code_hash)
);

CREATE TABLE mfa_tickets (
    ticket_hash bytea PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    failures    integer NOT NULL DEFAULT 0,
    ip          inet,
    user_agent  text NOT NULL DEFAULT ''
);

CREATE TABLE signing_keys (
    kid                   text PRIMARY KEY,
    state                 text NOT NULL CHECK (state IN ('next', 'active', 'retired')),
    algorithm             text NOT NULL DEFAULT 'RS256',
    private_key_encrypted bytea NOT NULL,
    public_jwk            jsonb NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    activated_at          timestamptz,
    retired_at            timestamptz,
    -- A retired key stays in the JWKS until every token it signed has expired.
    publish_until         timestamptz
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (state) WHERE state = 'next';

CREATE TABLE service_keys (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    key_hash   bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX service_keys_name_idx ON service_keys (name);

CREATE TABLE login_history (
    id         bigint GENERATED ALWAYS AS IDENTITY,
    login_at   timestamptz NOT NULL DEFAULT now(),
    user_id    uuid,
    outcome    text NOT NULL,
    ip         inet,
    user_agent text NOT NULL DEFAULT '',
    session_id uuid,
    PRIMARY KEY (login_at, id)
) PARTITION BY RANGE (login_at);
CREATE INDEX login_history_user_idx ON login_history (user_id, login_at DESC, id DESC);
CREATE TABLE login_history_default PARTITION OF login_history DEFAULT;
"""

MONTHLY_PARTITIONS = f"""
DO $$
DECLARE
    month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
BEGIN
    FOR i IN 0..{MONTHS_AHEAD} LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF login_history FOR VALUES FROM (%L) TO (%L)',
            'login_history_' || to_char(month + make_interval(months => i), 'YYYY_MM'),
            (month + make_interval(months => i))::timestamp AT TIME ZONE 'UTC',
            (month + make_interval(months => i + 1))::timestamp AT TIME ZONE 'UTC'
        );
    END LOOP;
END $$;
"""

SUPERUSER_ROLE = """
INSERT INTO roles (id, name, name_canonical, description, builtin)
VALUES ('00000000-0000-0000-0000-000000000001', 'superuser', 'superuser',
        'Every permission, including identity administration. Cannot be deleted or emptied.', true);
INSERT INTO permissions (name) VALUES ('*');
INSERT INTO role_permissions (role_id, permission_id)
SELECT '00000000-0000-0000-0000-000000000001', id FROM permissions WHERE name = '*';
"""

TABLES = [
    "login_history",
    "service_keys",
    "signing_keys",
    "mfa_tickets",
    "recovery_codes",
    "totp_factors",
    "refresh_tokens",
    "sessions",
    "rbac_version",
    "user_roles",
    "role_permissions",
    "roles",
    "permissions",
    "password_credentials",
    "users",
]


def upgrade() -> None:
    op.execute(SCHEMA)
    op.execute(MONTHLY_PARTITIONS)
    op.execute(SUPERUSER_ROLE)


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
