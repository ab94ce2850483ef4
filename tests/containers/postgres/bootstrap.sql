-- Roles and databases of the local platform (deploy/local/vigie-local bootstrap_sql), one password from the
-- environment for the test container.
\getenv pw VIGIE_DB_PASSWORD
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', r, :'pw')
    FROM unnest(ARRAY['users_owner', 'users_app', 'orders_owner', 'orders_app']) AS r \gexec
CREATE DATABASE users OWNER users_owner;
CREATE DATABASE orders OWNER orders_owner;
REVOKE ALL ON DATABASE users FROM PUBLIC;
REVOKE ALL ON DATABASE orders FROM PUBLIC;
GRANT CONNECT ON DATABASE users TO users_app;
GRANT CONNECT ON DATABASE orders TO orders_app;
\connect users
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO users_app;
\connect orders
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO orders_app;
