"""Named, ordered schema migrations. Each runs once, in order, inside one transaction, and is recorded.

Append new migrations at the end; never edit one that has shipped. Times are REAL (UNIX seconds).
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "0001_core",
        """
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            admin INTEGER NOT NULL DEFAULT 0,
            created REAL NOT NULL,
            last_activity REAL,
            user_info TEXT
        );
        CREATE TABLE groups (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            properties TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE group_members (
            group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            PRIMARY KEY (group_id, user_id)
        );
        CREATE INDEX group_members_user ON group_members(user_id);
        CREATE TABLE services (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            admin INTEGER NOT NULL DEFAULT 0,
            url TEXT NOT NULL DEFAULT '',
            info TEXT NOT NULL DEFAULT '{}',
            display INTEGER NOT NULL DEFAULT 1,
            from_config INTEGER NOT NULL DEFAULT 0,
            oauth_client_id TEXT NOT NULL DEFAULT '',
            oauth_redirect_uri TEXT NOT NULL DEFAULT '',
            oauth_no_confirm INTEGER NOT NULL DEFAULT 0,
            oauth_client_allowed_scopes TEXT NOT NULL DEFAULT '[]',
            command TEXT NOT NULL DEFAULT '[]',
            pid INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE roles (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            description TEXT NOT NULL DEFAULT '',
            scopes TEXT NOT NULL DEFAULT '[]'
        );
        CREATE TABLE user_roles (
            role_id INTEGER NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            PRIMARY KEY (role_id, user_id)
        );
        CREATE TABLE group_roles (
            role_id INTEGER NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
            group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
            PRIMARY KEY (role_id, group_id)
        );
        CREATE TABLE service_roles (
            role_id INTEGER NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
            service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE CASCADE,
            PRIMARY KEY (role_id, service_id)
        );
        CREATE TABLE servers (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            name TEXT NOT NULL DEFAULT '',
            display_name TEXT NOT NULL DEFAULT '',
            url TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL DEFAULT '{}',
            started REAL,
            last_activity REAL,
            user_options TEXT,
            created REAL,
            UNIQUE (user_id, name)
        );
        CREATE TABLE tokens (
            id INTEGER PRIMARY KEY,
            prefix TEXT NOT NULL,
            salt TEXT NOT NULL,
            hash TEXT NOT NULL,
            user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
            service_id INTEGER REFERENCES services(id) ON DELETE CASCADE,
            note TEXT NOT NULL DEFAULT '',
            scopes TEXT NOT NULL DEFAULT '[]',
            created REAL NOT NULL,
            last_activity REAL,
            expires_at REAL,
            session_id TEXT,
            client_id TEXT NOT NULL DEFAULT 'jupyterhub',
            server_id INTEGER REFERENCES servers(id) ON DELETE CASCADE,
            CHECK ((user_id IS NULL) != (service_id IS NULL))
        );
        CREATE INDEX tokens_prefix ON tokens(prefix);
        CREATE INDEX tokens_user ON tokens(user_id);
        """,
    ),
    (
        "0002_login_sessions_and_passwords",
        """
        CREATE TABLE login_sessions (
            id TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created REAL NOT NULL,
            expires_at REAL NOT NULL
        );
        CREATE INDEX login_sessions_user ON login_sessions(user_id);
        ALTER TABLE users ADD COLUMN password_hash TEXT;
        CREATE INDEX tokens_session ON tokens(session_id);
        """,
    ),
    (
        "0003_memberships_by_user",
        """
        CREATE INDEX user_roles_user ON user_roles(user_id, role_id);
        CREATE INDEX group_members_user_group ON group_members(user_id, group_id);
        """,
    ),
    (
        "0004_oauth",
        """
        CREATE TABLE oauth_codes (
            id INTEGER PRIMARY KEY,
            hash TEXT NOT NULL UNIQUE,
            client_id TEXT NOT NULL,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            session_id TEXT REFERENCES login_sessions(id) ON DELETE CASCADE,
            redirect_uri TEXT NOT NULL,
            scopes TEXT NOT NULL DEFAULT '[]',
            code_challenge TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL,
            expires_at REAL NOT NULL
        );
        CREATE INDEX tokens_client ON tokens(client_id)
        """,
    ),
    (
        "0005_shares",
        """
        CREATE TABLE shares (
            id INTEGER PRIMARY KEY,
            server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
            user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
            group_id INTEGER REFERENCES groups(id) ON DELETE CASCADE,
            scopes TEXT NOT NULL DEFAULT '[]',
            created REAL NOT NULL,
            CHECK ((user_id IS NULL) != (group_id IS NULL)),
            UNIQUE (server_id, user_id),
            UNIQUE (server_id, group_id)
        );
        CREATE INDEX shares_user ON shares(user_id);
        CREATE INDEX shares_group ON shares(group_id);
        CREATE TABLE share_codes (
            id INTEGER PRIMARY KEY,
            server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
            hash TEXT NOT NULL UNIQUE,
            scopes TEXT NOT NULL DEFAULT '[]',
            created REAL NOT NULL,
            expires_at REAL NOT NULL,
            exchange_count INTEGER NOT NULL DEFAULT 0,
            last_exchanged_at REAL
        );
        CREATE INDEX share_codes_server ON share_codes(server_id)
        """,
    ),
    (
        "0006_auth_state",
        # JupyterHub's column: the authenticator's auth_state, Fernet-encrypted JSON (authenticators.auth_state)
        "ALTER TABLE users ADD COLUMN encrypted_auth_state BLOB",
    ),
)
