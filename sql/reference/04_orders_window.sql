-- Reference job: orders of the 90 days before $as_of (exclusive), with the row-level cleaning
-- rules: user_id not null, amount > 0. Materialised once: the de-duplication reads it three times.
SELECT order_id, user_id, ts, brand, category, amount
FROM orders
WHERE user_id IS NOT NULL AND amount > 0
  AND ts >= CAST($as_of AS TIMESTAMP) - INTERVAL '90 days'
  AND ts < CAST($as_of AS TIMESTAMP)
