-- clickflow's tables (CONTRACT.md §4). Column names are the contract; extra columns
-- (updated_at) and indexes are ours. Applied once by `clickflow process` on start.

CREATE TABLE events_raw (
    event_id      text PRIMARY KEY,
    event_time    timestamptz NOT NULL,
    event_type    text NOT NULL,
    user_id       text NOT NULL,
    page          text NOT NULL,
    product_id    text,
    category      text,
    price         numeric(12,2),
    quantity      integer,
    order_id      text,
    device        text NOT NULL,
    country       text NOT NULL,
    referrer      text NOT NULL,
    user_agent    text NOT NULL,
    ip            text NOT NULL,
    ingested_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_raw_event_time ON events_raw (event_time);

CREATE TABLE sessions (
    user_id          text NOT NULL,
    session_start    timestamptz NOT NULL,
    session_end      timestamptz NOT NULL,
    duration_seconds double precision NOT NULL,
    event_count      integer NOT NULL,
    page_views       integer NOT NULL,
    product_views    integer NOT NULL,
    searches         integer NOT NULL,
    cart_adds        integer NOT NULL,
    cart_removes     integer NOT NULL,
    checkouts        integer NOT NULL,
    purchases        integer NOT NULL,
    units            bigint NOT NULL,
    revenue          numeric(14,2) NOT NULL,
    converted        boolean NOT NULL,
    bounced          boolean NOT NULL,
    cart_abandoned   boolean NOT NULL,
    landing_page     text NOT NULL,
    exit_page        text NOT NULL,
    device           text NOT NULL,
    country          text NOT NULL,
    referrer         text NOT NULL,
    funnel_step      smallint NOT NULL,
    is_final         boolean NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, session_start)
);
CREATE INDEX sessions_session_start ON sessions (session_start);

CREATE TABLE traffic (
    window_start  timestamptz PRIMARY KEY,
    window_end    timestamptz NOT NULL,
    events        bigint NOT NULL,
    page_views    bigint NOT NULL,
    product_views bigint NOT NULL,
    searches      bigint NOT NULL,
    cart_adds     bigint NOT NULL,
    cart_removes  bigint NOT NULL,
    checkouts     bigint NOT NULL,
    purchases     bigint NOT NULL,
    active_users  bigint NOT NULL,
    revenue       numeric(14,2) NOT NULL,
    is_final      boolean NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE product_stats (
    window_start          timestamptz NOT NULL,
    product_id            text NOT NULL,
    window_end            timestamptz NOT NULL,
    category              text NOT NULL,
    views                 bigint NOT NULL,
    cart_adds             bigint NOT NULL,
    cart_removes          bigint NOT NULL,
    purchases             bigint NOT NULL,
    units                 bigint NOT NULL,
    revenue               numeric(14,2) NOT NULL,
    view_to_cart_rate     double precision,
    cart_to_purchase_rate double precision,
    is_final              boolean NOT NULL,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (window_start, product_id)
);

CREATE TABLE funnel (
    window_start          timestamptz PRIMARY KEY,
    window_end            timestamptz NOT NULL,
    sessions              bigint NOT NULL,
    product_view_sessions bigint NOT NULL,
    cart_sessions         bigint NOT NULL,
    checkout_sessions     bigint NOT NULL,
    purchase_sessions     bigint NOT NULL,
    conversion_rate       double precision NOT NULL,
    cart_abandonment_rate double precision,
    bounce_rate           double precision NOT NULL,
    avg_session_seconds   double precision NOT NULL,
    revenue               numeric(14,2) NOT NULL,
    is_final              boolean NOT NULL,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE conversion (
    window_start       timestamptz NOT NULL,
    dimension          text NOT NULL CHECK (dimension IN ('device', 'country', 'referrer')),
    value              text NOT NULL,
    window_end         timestamptz NOT NULL,
    sessions           bigint NOT NULL,
    converted_sessions bigint NOT NULL,
    conversion_rate    double precision NOT NULL,
    revenue            numeric(14,2) NOT NULL,
    is_final           boolean NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (window_start, dimension, value)
);

-- One row per message that was not aggregated (duplicates are only counted).
-- `source` names the message's position, so a replay writes nothing twice.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL,
    source      text NOT NULL UNIQUE,
    reason      text NOT NULL,
    detail      text NOT NULL,
    payload     text NOT NULL
);
CREATE INDEX dead_letters_reason ON dead_letters (reason, received_at);

CREATE TABLE pipeline_progress (
    id                        bigserial PRIMARY KEY,
    reported_at               timestamptz NOT NULL,
    run_id                    text NOT NULL,
    watermark                 timestamptz,
    max_event_time            timestamptz,
    input_rows_per_second     double precision NOT NULL,
    processed_rows_per_second double precision NOT NULL,
    open_sessions             bigint NOT NULL,
    kafka_lag                 bigint,
    input_events              bigint NOT NULL,
    late_events               bigint NOT NULL,
    duplicate_events          bigint NOT NULL,
    dead_letters              bigint NOT NULL
);
CREATE INDEX pipeline_progress_reported_at ON pipeline_progress (reported_at);
