-- cohort_retention (CONTRACT §7): a user's cohort is the UTC day of their first accepted
-- event; one row per cohort and day on which at least one of its users was active.
-- (A restart reads the cohorts back from events_raw by aggregate queries, not from this
-- table: see PgSink::open_state.)
CREATE TABLE cohort_retention (
    cohort_date   date NOT NULL,
    day_offset    integer NOT NULL CHECK (day_offset >= 0),
    cohort_users  bigint NOT NULL,
    active_users  bigint NOT NULL,
    retention     double precision NOT NULL,
    revenue       numeric(14,2) NOT NULL,
    is_final      boolean NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cohort_date, day_offset)
);
