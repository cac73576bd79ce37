-- product_pairs (CONTRACT §7): frequently bought together, over every order before
-- as_of, both directions, the best 10 per product_id. Rewritten as each day closes: no
-- is_final column.
CREATE TABLE product_pairs (
    product_id        text NOT NULL,
    other_product_id  text NOT NULL,
    orders_together   bigint NOT NULL CHECK (orders_together >= 2),
    confidence        double precision NOT NULL,
    lift              double precision NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (product_id, other_product_id)
);
