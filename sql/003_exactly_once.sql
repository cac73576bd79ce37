-- Exactly-once restarts (README "Guarantees", docs/contract.md §2): where each source
-- partition resumes, committed in the same transaction as the rows its messages
-- produced, with its running totals; and the watermark the operators had reached.
-- A restarted processor reads these back, rebuilds its open state from events_raw
-- (the open rows' events) and resumes reading after the committed positions.

-- The dedupe horizon lets an event_id come back as a new event once W has passed it.
ALTER TABLE events_raw DROP CONSTRAINT events_raw_pkey;
ALTER TABLE events_raw ADD PRIMARY KEY (event_id, event_time);

CREATE TABLE source_positions (
    source            text PRIMARY KEY,   -- kafka:<topic>/<partition>, file:<path>
    next_offset       bigint NOT NULL,    -- Kafka: the next offset to read; file: byte offset of the next line
    lines_read        bigint NOT NULL,    -- file: lines read so far; Kafka: 0
    identity          text,               -- file: its size and a hash of its first block, to recognise it
    max_event_time_ms bigint,             -- the largest event_time accepted from this partition (ms since the epoch)
    input_events      bigint NOT NULL,    -- running totals for this partition since it was first read
    accepted_events   bigint NOT NULL,
    late_events       bigint NOT NULL,
    duplicate_events  bigint NOT NULL,
    dead_letters      bigint NOT NULL,
    committed_at      timestamptz NOT NULL
);

-- One row: the watermark W (ms since the epoch; the largest bigint once a bounded input
-- has ended) of the last committed epoch.
CREATE TABLE pipeline_state (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    watermark_ms bigint NOT NULL,
    committed_at timestamptz NOT NULL
);

-- Messages read by the run that wrote the report (the totals are since the first run).
ALTER TABLE pipeline_progress ADD COLUMN run_input_events bigint;

-- The open rows, found at restart without scanning the final ones.
CREATE INDEX sessions_open ON sessions (session_start) WHERE NOT is_final;
CREATE INDEX traffic_open ON traffic (window_start) WHERE NOT is_final;
CREATE INDEX product_stats_open ON product_stats (window_start) WHERE NOT is_final;
CREATE INDEX funnel_open ON funnel (window_start) WHERE NOT is_final;
CREATE INDEX conversion_open ON conversion (window_start) WHERE NOT is_final;
