-- Reference job: cleaned orders of the 90 days before $as_of (exclusive).
-- Cleaning rules: user_id not null, amount > 0, ts in [as_of - 90 days, as_of), one row per
-- order_id. Of several rows with one order_id the first by (ts, user_id, amount) is kept.
-- Only ids that occur more than once pay for the ordering: the others pass straight through.
WITH w AS (
  SELECT order_id, user_id, ts, brand, category, amount
  FROM orders
  WHERE user_id IS NOT NULL AND amount > 0
    AND ts >= CAST($as_of AS TIMESTAMP) - INTERVAL '90 days'
    AND ts < CAST($as_of AS TIMESTAMP)
),
ids AS (
  SELECT order_id, COUNT(*) AS n FROM w GROUP BY order_id
),
ranked AS (
  SELECT w.*, ROW_NUMBER() OVER (PARTITION BY w.order_id ORDER BY w.ts, w.user_id, w.amount) AS rk
  FROM w JOIN ids ON w.order_id = ids.order_id AND ids.n > 1
)
SELECT w.user_id, w.ts, w.brand, w.category, w.amount
FROM w JOIN ids ON w.order_id = ids.order_id AND ids.n = 1
UNION ALL
SELECT user_id, ts, brand, category, amount FROM ranked WHERE rk = 1
