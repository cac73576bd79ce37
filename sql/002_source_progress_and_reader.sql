-- Per-partition progress (one row per source partition per progress report, next to
-- pipeline_progress), for per-partition lag in the monitor and dashboards; and a
-- read-only role for dashboards and notebooks.

CREATE TABLE source_progress (
    id               bigserial PRIMARY KEY,
    reported_at      timestamptz NOT NULL,
    run_id           text NOT NULL,
    source           text NOT NULL,
    watermark        timestamptz,
    max_event_time   timestamptz,
    input_events     bigint NOT NULL,
    late_events      bigint NOT NULL,
    duplicate_events bigint NOT NULL,
    dead_letters     bigint NOT NULL,
    lag              bigint
);
CREATE INDEX source_progress_reported_at ON source_progress (reported_at);

-- clickflow_reader may read every table, now and later. Created only where the
-- migrating user may create roles; its password is for local setups: change it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'clickflow_reader')
       AND (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
        CREATE ROLE clickflow_reader LOGIN PASSWORD 'clickflow_reader';
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'clickflow_reader') THEN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO clickflow_reader', current_database());
        GRANT USAGE ON SCHEMA public TO clickflow_reader;
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO clickflow_reader;
        ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO clickflow_reader;
    END IF;
END $$;
