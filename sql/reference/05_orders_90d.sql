-- Reference job: one row per order_id. Of several rows with one order_id the first by
-- (ts, user_id, amount) is kept. Only ids that occur more than once pay for the ordering: the
-- others pass straight through an anti-join against the (small) set of repeated ids.
WITH dup AS (
  SELECT order_id FROM orders_window GROUP BY order_id HAVING COUNT(*) > 1
)
SELECT user_id, ts, brand, category, amount
FROM orders_window
WHERE order_id NOT IN (SELECT order_id FROM dup)
UNION ALL
SELECT user_id, ts, brand, category, amount
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY ts, user_id, amount) AS rk
  FROM orders_window
  WHERE order_id IN (SELECT order_id FROM dup)
) r
WHERE rk = 1
