-- SCIM users, groups, memberships and the filter index (PostgreSQL).
-- Every key starts with the provider: no row is reachable without naming its provider, and a
-- membership can only join a group and a user of the same provider (the composite foreign keys).
-- Times are microseconds since the Unix epoch; JSON is jsonb.

CREATE TABLE scim_users (
    provider        TEXT    NOT NULL,
    id              UUID    NOT NULL,
    resource        JSONB   NOT NULL,
    user_name       TEXT    NOT NULL,
    user_name_lower TEXT    NOT NULL,
    external_id     TEXT,
    emails          JSONB   NOT NULL,
    active          BOOLEAN NOT NULL,
    created_us      BIGINT  NOT NULL,
    modified_us     BIGINT  NOT NULL,
    version         BIGINT  NOT NULL,
    PRIMARY KEY (provider, id)
);
CREATE UNIQUE INDEX scim_users_user_name ON scim_users (provider, user_name_lower);
CREATE UNIQUE INDEX scim_users_external_id ON scim_users (provider, external_id);
CREATE INDEX scim_users_order ON scim_users (provider, created_us, id);

CREATE TABLE scim_user_emails (
    provider    TEXT NOT NULL,
    user_id     UUID NOT NULL,
    email_lower TEXT NOT NULL,
    PRIMARY KEY (provider, user_id, email_lower),
    FOREIGN KEY (provider, user_id) REFERENCES scim_users (provider, id) ON DELETE CASCADE
);
CREATE INDEX scim_user_emails_email ON scim_user_emails (provider, email_lower);

CREATE TABLE scim_groups (
    provider           TEXT    NOT NULL,
    id                 UUID    NOT NULL,
    resource           JSONB   NOT NULL,
    display_name       TEXT    NOT NULL,
    display_name_lower TEXT    NOT NULL,
    external_id        TEXT,
    created_us         BIGINT  NOT NULL,
    modified_us        BIGINT  NOT NULL,
    version            BIGINT  NOT NULL,
    PRIMARY KEY (provider, id)
);
CREATE UNIQUE INDEX scim_groups_display_name ON scim_groups (provider, display_name_lower);
CREATE UNIQUE INDEX scim_groups_external_id ON scim_groups (provider, external_id);
CREATE INDEX scim_groups_order ON scim_groups (provider, created_us, id);

CREATE TABLE scim_memberships (
    provider TEXT NOT NULL,
    group_id UUID NOT NULL,
    user_id  UUID NOT NULL,
    PRIMARY KEY (provider, group_id, user_id),
    FOREIGN KEY (provider, group_id) REFERENCES scim_groups (provider, id) ON DELETE CASCADE,
    FOREIGN KEY (provider, user_id) REFERENCES scim_users (provider, id) ON DELETE CASCADE
);
CREATE INDEX scim_memberships_user ON scim_memberships (provider, user_id);
