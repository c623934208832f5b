-- kratos-jit's own database and role (SCIM users, groups, memberships and their filter index),
-- next to Kratos's and Polis's. Runs once, when the data volume is created.
CREATE ROLE kratos_jit LOGIN PASSWORD 'dev-kratos-jit-db-password';
CREATE DATABASE kratos_jit OWNER kratos_jit;
