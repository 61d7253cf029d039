"""RBAC change log: what each rbac_version bump touched.

Every RBAC write already bumps rbac_version once per statement (migration 0003); the
bump now also writes, in the same transaction, one or more rows of rbac_changes saying
what that version touched:

- user      a user's assignments, disabled flag or existence (user_id);
- role      a role's name or permissions (role_id);
- members   a role lost many holders at once (role_id), e.g. a forced DeleteRole: too
            many users to name one by one;
- catalogue the permission catalogue (a permission added or dropped);
- keys      the service keys;
- all       the log cannot say (TRUNCATE, a renamed permission, too many ids);
- none      the statement changed no row (a revoke of an assignment that did not exist).

A server process that applies version V reads the rows of (applied, V] and drops only
the cache entries they name (services/authz_sync.py, services/permission_cache.py); a
version with no row (a gap), or too many rows, makes it clear everything instead.
Rows older than a few thousand versions are pruned by the bump itself.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# In the SQL below: a statement naming more than 1000 ids is logged as `members` (lost
# assignments of a role) or `all`, since a process drops entries one by one only for
# small changes; 4096 versions of history are kept (a process further behind clears
# everything anyway).
UPGRADE = """
CREATE TABLE rbac_changes (
    version bigint NOT NULL,
    kind    text NOT NULL
            CHECK (kind IN ('user', 'role', 'members', 'catalogue', 'keys', 'all', 'none')),
    role_id uuid,
    user_id uuid
);
CREATE INDEX rbac_changes_version_idx ON rbac_changes (version);

-- Bumps rbac_version, records what the new version touched, NOTIFYs it.
CREATE FUNCTION rbac_log(change_kind text, ids uuid[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    bumped bigint;
BEGIN
    UPDATE rbac_version SET version = version + 1 RETURNING version INTO bumped;
    IF change_kind IN ('user', 'role', 'members') THEN
        IF cardinality(ids) > 1000 THEN
            change_kind := 'all';
        ELSIF cardinality(ids) = 0 THEN
            change_kind := 'none';
        END IF;
    END IF;
    IF change_kind = 'user' THEN
        INSERT INTO rbac_changes (version, kind, user_id) SELECT bumped, 'user', unnest(ids);
    ELSIF change_kind IN ('role', 'members') THEN
        INSERT INTO rbac_changes (version, kind, role_id) SELECT bumped, change_kind, unnest(ids);
    ELSE
        INSERT INTO rbac_changes (version, kind) VALUES (bumped, change_kind);
    END IF;
    IF bumped % 256 = 0 THEN
        DELETE FROM rbac_changes WHERE version <= bumped - 4096;
    END IF;
    PERFORM pg_notify('identity_rbac', bumped::text);
END $$;

CREATE FUNCTION rbac_user_roles_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    users uuid[];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM rbac_log('all', '{}');
    ELSIF TG_OP = 'INSERT' THEN
        PERFORM rbac_log('user', ARRAY(SELECT DISTINCT user_id FROM new_rows));
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM rbac_log('user', ARRAY(SELECT user_id FROM old_rows UNION SELECT user_id FROM new_rows));
    ELSE
        users := ARRAY(SELECT DISTINCT user_id FROM old_rows);
        IF cardinality(users) > 1000 THEN
            -- Lost assignments only: the holders of these roles are read again when asked about.
            PERFORM rbac_log('members', ARRAY(SELECT DISTINCT role_id FROM old_rows));
        ELSE
            PERFORM rbac_log('user', users);
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION rbac_roles_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM rbac_log('all', '{}');
    ELSIF TG_OP = 'INSERT' THEN
        PERFORM rbac_log('role', ARRAY(SELECT id FROM new_rows));
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM rbac_log('role', ARRAY(SELECT id FROM old_rows UNION SELECT id FROM new_rows));
    ELSE
        PERFORM rbac_log('role', ARRAY(SELECT id FROM old_rows));
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION rbac_role_permissions_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM rbac_log('all', '{}');
    ELSIF TG_OP = 'INSERT' THEN
        PERFORM rbac_log('role', ARRAY(SELECT DISTINCT role_id FROM new_rows));
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM rbac_log('role', ARRAY(SELECT role_id FROM old_rows UNION SELECT role_id FROM new_rows));
    ELSE
        PERFORM rbac_log('role', ARRAY(SELECT DISTINCT role_id FROM old_rows));
    END IF;
    RETURN NULL;
END $$;

-- Adding or dropping a permission changes the catalogue only (one carried by a role
-- cannot be dropped); renaming one changes the roles carrying it.
CREATE FUNCTION rbac_permissions_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM rbac_log(CASE WHEN TG_OP IN ('INSERT', 'DELETE') THEN 'catalogue' ELSE 'all' END, '{}');
    RETURN NULL;
END $$;

CREATE FUNCTION rbac_service_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM rbac_log('keys', '{}');
    RETURN NULL;
END $$;

CREATE FUNCTION rbac_user_disabled_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM rbac_log('user', ARRAY[NEW.id]);
    RETURN NULL;
END $$;

CREATE FUNCTION rbac_users_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM rbac_log('user', ARRAY(SELECT id FROM old_rows));
    RETURN NULL;
END $$;

DROP TRIGGER users_disabled_bump_rbac_version ON users;
DROP TRIGGER users_delete_bump_rbac_version ON users;
DROP TRIGGER roles_bump_rbac_version ON roles;
DROP TRIGGER role_permissions_bump_rbac_version ON role_permissions;
DROP TRIGGER user_roles_bump_rbac_version ON user_roles;
DROP TRIGGER permissions_bump_rbac_version ON permissions;
DROP TRIGGER service_keys_bump_rbac_version ON service_keys;

CREATE TRIGGER users_disabled_log_rbac_change
    AFTER UPDATE OF disabled_at ON users FOR EACH ROW
    WHEN (OLD.disabled_at IS DISTINCT FROM NEW.disabled_at)
    EXECUTE FUNCTION rbac_user_disabled_changed();
CREATE TRIGGER users_delete_log_rbac_change
    AFTER DELETE ON users REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rbac_users_deleted();
CREATE TRIGGER service_keys_log_rbac_change
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON service_keys
    FOR EACH STATEMENT EXECUTE FUNCTION rbac_service_keys_changed();
CREATE TRIGGER permissions_log_rbac_change
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON permissions
    FOR EACH STATEMENT EXECUTE FUNCTION rbac_permissions_changed();
"""

# A trigger with transition tables fires on one event only (PostgreSQL's rule).
TABLE_TRIGGERS = """
CREATE TRIGGER {table}_insert_log_rbac_change
    AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {function}();
CREATE TRIGGER {table}_update_log_rbac_change
    AFTER UPDATE ON {table} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {function}();
CREATE TRIGGER {table}_delete_log_rbac_change
    AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {function}();
CREATE TRIGGER {table}_truncate_log_rbac_change
    AFTER TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {function}();
"""

LOGGED_TABLES = {
    "user_roles": "rbac_user_roles_changed",
    "roles": "rbac_roles_changed",
    "role_permissions": "rbac_role_permissions_changed",
}

DOWNGRADE = """
DROP TRIGGER IF EXISTS users_disabled_log_rbac_change ON users;
DROP TRIGGER IF EXISTS users_delete_log_rbac_change ON users;
DROP TRIGGER IF EXISTS service_keys_log_rbac_change ON service_keys;
DROP TRIGGER IF EXISTS permissions_log_rbac_change ON permissions;
{table_triggers}
DROP FUNCTION IF EXISTS rbac_users_deleted();
DROP FUNCTION IF EXISTS rbac_user_disabled_changed();
DROP FUNCTION IF EXISTS rbac_service_keys_changed();
DROP FUNCTION IF EXISTS rbac_permissions_changed();
DROP FUNCTION IF EXISTS rbac_role_permissions_changed();
DROP FUNCTION IF EXISTS rbac_roles_changed();
DROP FUNCTION IF EXISTS rbac_user_roles_changed();
DROP FUNCTION IF EXISTS rbac_log(text, uuid[]);
DROP TABLE IF EXISTS rbac_changes;

-- The triggers of migration 0003, as they were.
CREATE TRIGGER users_disabled_bump_rbac_version
    AFTER UPDATE OF disabled_at ON users FOR EACH ROW
    WHEN (OLD.disabled_at IS DISTINCT FROM NEW.disabled_at)
    EXECUTE FUNCTION rbac_bump_version();
CREATE TRIGGER users_delete_bump_rbac_version
    AFTER DELETE ON users FOR EACH STATEMENT EXECUTE FUNCTION rbac_bump_version();
"""

BUMP_TRIGGER = """
CREATE TRIGGER {table}_bump_rbac_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION rbac_bump_version();
"""


def upgrade() -> None:
    op.execute(UPGRADE)
    for table, function in LOGGED_TABLES.items():
        op.execute(TABLE_TRIGGERS.format(table=table, function=function))


def downgrade() -> None:
    table_triggers = "\n".join(
        f"DROP TRIGGER IF EXISTS {table}_{event}_log_rbac_change ON {table};"
        for table in LOGGED_TABLES
        for event in ("insert", "update", "delete", "truncate")
    )
    op.execute(DOWNGRADE.format(table_triggers=table_triggers))
    for table in ("roles", "role_permissions", "user_roles", "permissions", "service_keys"):
        op.execute(BUMP_TRIGGER.format(table=table))
