-- product_similar (CONTRACT §7): products viewed together, over final sessions, both
-- directions, the best 10 per product_id by similarity. Rewritten as sessions become
-- final: no is_final column.
CREATE TABLE product_similar (
    product_id         text NOT NULL,
    other_product_id   text NOT NULL,
    sessions_together  bigint NOT NULL CHECK (sessions_together >= 2),
    similarity         double precision NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (product_id, other_product_id)
);
