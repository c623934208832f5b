-- Lookups by e-mail and by member that touch only the rows they return (PostgreSQL).
-- The same index shapes as SQLite's step 2: both hold every column the lookups read, so
-- PostgreSQL can answer them from the index alone.

CREATE INDEX scim_user_emails_by_email ON scim_user_emails (provider, email_lower, user_id);
DROP INDEX scim_user_emails_email;

CREATE INDEX scim_memberships_by_user ON scim_memberships (provider, user_id, group_id);
DROP INDEX scim_memberships_user;
