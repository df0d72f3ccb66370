-- Clean orders of the 90 days before $as_of (exclusive).
-- Dropped: null user ids, non-positive amounts, timestamps outside the window, and exact
-- duplicate rows (the same order delivered twice by the upstream export).
-- The `dt` filter prunes day partitions before any file is opened.
SELECT DISTINCT order_id, user_id, ts, brand, category, amount, qty
FROM orders
WHERE dt >= CAST(CAST($as_of AS DATE) - INTERVAL '90 days' AS VARCHAR)
  AND dt < CAST(CAST($as_of AS DATE) AS VARCHAR)
  AND user_id IS NOT NULL
  AND amount > 0
  AND ts >= CAST($as_of AS TIMESTAMP) - INTERVAL '90 days'
  AND ts < CAST($as_of AS TIMESTAMP)
