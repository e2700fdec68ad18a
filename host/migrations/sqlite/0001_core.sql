-- Panelink core schema (SQLite). Keep in step with ../postgres/0001_core.sql: same tables, columns
-- and constraints; only the dialect differs (ids, booleans, blobs).
-- Timestamps are BIGINT milliseconds since the Unix epoch (UTC), written by the application.
-- Booleans are INTEGER 0/1 here (BOOLEAN in PostgreSQL): sqlx's Any driver cannot read SQLite
-- columns declared BOOLEAN. TRUE and FALSE in queries are 1 and 0 in SQLite.
-- Later migrations append 0002_… and up; never edit an applied migration.

CREATE TABLE roles (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    builtin     INTEGER NOT NULL DEFAULT 0,
    created_at  BIGINT  NOT NULL
);

CREATE TABLE role_permissions (
    role_id     BIGINT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    permission  TEXT   NOT NULL CHECK (permission IN ('configure_application_links', 'manage_servers',
                                        'manage_clients', 'manage_plugins', 'manage_admins')),
    PRIMARY KEY (role_id, permission)
);

CREATE TABLE admins (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    email       TEXT   NOT NULL UNIQUE,
    role_id     BIGINT NOT NULL REFERENCES roles (id),
    created_at  BIGINT NOT NULL
);

-- Only the SHA-256 of a token is stored.
CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    admin_id    BIGINT NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    token_hash  TEXT   NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

-- api_token_sealed: the server's API token encrypted by crypto::SecretBox (never plaintext).
CREATE TABLE servers (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    name              TEXT    NOT NULL,
    module            TEXT    NOT NULL,
    hostname          TEXT    NOT NULL,
    port              BIGINT  NOT NULL CHECK (port BETWEEN 1 AND 65535),
    secure            INTEGER NOT NULL,
    username          TEXT    NOT NULL,
    api_token_sealed  TEXT    NOT NULL,
    enabled           INTEGER NOT NULL,
    supported         INTEGER,
    support_detail    TEXT,
    checked_at        BIGINT,
    sync_state        TEXT CHECK (sync_state IN ('synced', 'failed')),
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL
);
CREATE INDEX servers_module ON servers (module);

CREATE TABLE clients (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    email       TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('active', 'inactive', 'closed')),
    allow_sso   INTEGER NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);

CREATE TABLE client_users (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id   BIGINT  NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    email       TEXT    NOT NULL,
    owner       INTEGER NOT NULL,
    created_at  BIGINT  NOT NULL,
    UNIQUE (client_id, email)
);
-- At most one owner per client.
CREATE UNIQUE INDEX client_users_owner ON client_users (client_id) WHERE owner;

CREATE TABLE client_user_permissions (
    user_id     BIGINT NOT NULL REFERENCES client_users (id) ON DELETE CASCADE,
    permission  TEXT   NOT NULL,
    PRIMARY KEY (user_id, permission)
);

CREATE TABLE services (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id   BIGINT NOT NULL REFERENCES clients (id),
    server_id   BIGINT NOT NULL REFERENCES servers (id),
    username    TEXT   NOT NULL,
    domain      TEXT   NOT NULL,
    status      TEXT   NOT NULL CHECK (status IN ('pending', 'active', 'suspended', 'terminated', 'cancelled')),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX services_server ON services (server_id);
CREATE INDEX services_client ON services (client_id);

-- One row per application a plugin has served; the active plugin version is in plugin_versions.
CREATE TABLE applications (
    id          TEXT    PRIMARY KEY,
    enabled     INTEGER NOT NULL DEFAULT 0,
    updated_at  BIGINT  NOT NULL
);

-- The admin's link configuration; position is the 1-based display order.
CREATE TABLE link_settings (
    application   TEXT    NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    scope         TEXT    NOT NULL,
    display_name  TEXT    NOT NULL,
    enabled       INTEGER NOT NULL,
    position      BIGINT  NOT NULL,
    PRIMARY KEY (application, scope)
);

-- The application log. No foreign keys to servers or services: the log outlives them.
CREATE TABLE app_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    application  TEXT   NOT NULL,
    sync_id      BIGINT,
    at           BIGINT NOT NULL,
    level        TEXT   NOT NULL CHECK (level IN ('debug', 'info', 'notice', 'warning')),
    message      TEXT   NOT NULL,
    server_id    BIGINT,
    service_id   BIGINT
);
CREATE INDEX app_log_application ON app_log (application, id);

-- Every plugin version the host has seen: from plugin_dir (component NULL: the file is the copy)
-- or uploaded (component holds the bytes, so every node and every restart can load it).
CREATE TABLE plugin_versions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL,
    application   TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    digest        TEXT    NOT NULL UNIQUE,
    world         TEXT    NOT NULL,
    size          BIGINT  NOT NULL,
    source        TEXT    NOT NULL CHECK (source IN ('directory', 'upload')),
    component     BLOB,
    active        INTEGER NOT NULL DEFAULT 0,
    installed_at  BIGINT  NOT NULL,
    activated_at  BIGINT,
    UNIQUE (name, version)
);
CREATE UNIQUE INDEX plugin_versions_one_active ON plugin_versions (name) WHERE active;

-- Who changed what, when. Never holds a secret.
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        BIGINT NOT NULL,
    admin_id  BIGINT,
    actor     TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    target    TEXT   NOT NULL,
    detail    TEXT   NOT NULL
);

INSERT INTO roles (name, builtin, created_at) VALUES ('Full Administrator', TRUE, 0);
INSERT INTO role_permissions (role_id, permission)
    SELECT id, p.permission FROM roles,
        (SELECT 'configure_application_links' AS permission UNION ALL SELECT 'manage_servers'
         UNION ALL SELECT 'manage_clients' UNION ALL SELECT 'manage_plugins'
         UNION ALL SELECT 'manage_admins') AS p
    WHERE roles.name = 'Full Administrator';
