-- session_risk (CONTRACT §7): every final session scoring at least --risk-threshold,
-- written once when it becomes final. risk_models: each model version that scored a
-- session, stored with the first one, so that a restart and `clickflow serve` use it.
CREATE TABLE session_risk (
    user_id        text NOT NULL,
    session_start  timestamptz NOT NULL,
    session_end    timestamptz NOT NULL,
    score          smallint NOT NULL CHECK (score BETWEEN 0 AND 100),
    reasons        text[] NOT NULL,
    model_version  text NOT NULL,
    scored_at      timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, session_start)
);
CREATE INDEX session_risk_scored_at ON session_risk (scored_at);

CREATE TABLE risk_models (
    model_version  text PRIMARY KEY,
    valid_from     timestamptz NOT NULL UNIQUE,
    sessions       bigint NOT NULL,
    model          jsonb NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
