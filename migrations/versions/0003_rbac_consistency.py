"""RBAC: exact cache invalidation across processes, and the service's own permissions.

- Every write that can change anyone's permissions (roles, their permissions, assignments,
  the permission catalogue, service keys, a user's disabled flag) bumps rbac_version in
  the same transaction, by trigger, whichever code path made it, and NOTIFYs the new
  version on channel `identity_rbac` at commit.
- rbac_cache_leases: each server process that answers checks from its in-process cache
  holds a short lease here and acknowledges every version it has applied. A writer
  returns only when every live lease has acknowledged its version (or lapsed), which is
  what makes "the very next check on any process sees it" exact (services/authz_sync.py).
- permissions.builtin marks the catalogue entries that exist without any role carrying
  them: the wildcard and the identity.* permissions that guard the admin RPCs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BUMPED_TABLES = ("roles", "role_permissions", "user_roles", "permissions", "service_keys")
BUILTIN_PERMISSIONS = ("identity.roles.read", "identity.roles.write", "identity.roles.assign")

UPGRADE = """
ALTER TABLE permissions ADD COLUMN builtin boolean NOT NULL DEFAULT false;
UPDATE permissions SET builtin = true WHERE name = '*';
INSERT INTO permissions (name, builtin)
VALUES ('identity.roles.read', true), ('identity.roles.write', true), ('identity.roles.assign', true)
ON CONFLICT (name) DO UPDATE SET builtin = true;

CREATE TABLE rbac_cache_leases (
    id            uuid PRIMARY KEY,
    -- The highest rbac_version this process has applied to its cache.
    acked_version bigint NOT NULL,
    -- PostgreSQL's clock; the process stops trusting its cache before this moment.
    expires_at    timestamptz NOT NULL,
    host          text NOT NULL DEFAULT '',
    pid           integer,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION rbac_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bumped bigint;
BEGIN
    UPDATE rbac_version SET version = version + 1 RETURNING version INTO bumped;
    PERFORM pg_notify('identity_rbac', bumped::text);
    RETURN NULL;
END $$;

CREATE TRIGGER users_disabled_bump_rbac_version
    AFTER UPDATE OF disabled_at ON users FOR EACH ROW
    WHEN (OLD.disabled_at IS DISTINCT FROM NEW.disabled_at)
    EXECUTE FUNCTION rbac_bump_version();
CREATE TRIGGER users_delete_bump_rbac_version
    AFTER DELETE ON users FOR EACH STATEMENT EXECUTE FUNCTION rbac_bump_version();
"""

TABLE_TRIGGER = """
CREATE TRIGGER {table}_bump_rbac_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION rbac_bump_version();
"""

DOWNGRADE = """
DROP TRIGGER IF EXISTS users_disabled_bump_rbac_version ON users;
DROP TRIGGER IF EXISTS users_delete_bump_rbac_version ON users;
{table_triggers}
DROP FUNCTION IF EXISTS rbac_bump_version();
DROP TABLE IF EXISTS rbac_cache_leases;
DELETE FROM permissions p
WHERE p.builtin AND p.name <> '*'
  AND NOT EXISTS (SELECT 1 FROM role_permissions rp WHERE rp.permission_id = p.id);
ALTER TABLE permissions DROP COLUMN IF EXISTS builtin;
"""


def upgrade() -> None:
    op.execute(UPGRADE)
    for table in BUMPED_TABLES:
        op.execute(TABLE_TRIGGER.format(table=table))


def downgrade() -> None:
    table_triggers = "\n".join(
        f"DROP TRIGGER IF EXISTS {table}_bump_rbac_version ON {table};" for table in BUMPED_TABLES
    )
    op.execute(DOWNGRADE.format(table_triggers=table_triggers))
