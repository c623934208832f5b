-- Lookups by e-mail and by member that touch only the rows they return (SQLite).
-- Without these, SQLite's planner (no statistics on a fresh database) answered "the groups of a
-- user" and "the users with this e-mail" by walking every membership or user of the provider:
-- the cost of a filter grew with the store. Both new indexes hold every column the lookups read,
-- so the lookups never leave the index; the queries name the join order (CROSS JOIN).

CREATE INDEX scim_user_emails_by_email ON scim_user_emails (provider, email_lower, user_id);
DROP INDEX scim_user_emails_email;

CREATE INDEX scim_memberships_by_user ON scim_memberships (provider, user_id, group_id);
DROP INDEX scim_memberships_user;
