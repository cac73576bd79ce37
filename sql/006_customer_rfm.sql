-- customer_rfm (CONTRACT §7): every user with a purchase before as_of, the end of the
-- latest closed day, scored by rank over all of them. Rewritten as each day closes: no
-- is_final column.
CREATE TABLE customer_rfm (
    user_id           text PRIMARY KEY,
    as_of             timestamptz NOT NULL,
    last_purchase_at  timestamptz NOT NULL,
    recency_days      integer NOT NULL,
    frequency         bigint NOT NULL,
    monetary          numeric(14,2) NOT NULL,
    r_score           smallint NOT NULL CHECK (r_score BETWEEN 1 AND 5),
    f_score           smallint NOT NULL CHECK (f_score BETWEEN 1 AND 5),
    m_score           smallint NOT NULL CHECK (m_score BETWEEN 1 AND 5),
    segment           text NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customer_rfm_segment ON customer_rfm (segment);
