-- Ory Polis's own database and role in the local stack's PostgreSQL, next to Kratos's.
-- Runs once, when the data volume is created (docker-entrypoint-initdb.d).
CREATE ROLE polis LOGIN PASSWORD 'dev-polis-db-password';
CREATE DATABASE polis OWNER polis;
