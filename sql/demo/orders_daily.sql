-- Orders per day, user, brand and category: counts, exact sums and the last order time.
-- An incremental step (jobs/demo.toml): the engine computes only the days its state lacks or
-- whose files changed, and user_features.sql rolls the window's days up. A day's rows depend
-- on that day's orders alone; the brands and categories of a day are rows, so distinct counts
-- over the window stay exact.
-- Dropped: null user ids, non-positive amounts, orders stamped outside their day partition,
-- and exact duplicate rows (the same order delivered twice by the upstream export).
-- The `dt` filter keeps the 90 days before $as_of when the step runs without state.
SELECT dt, user_id, brand, category,
       COUNT(*) AS orders,
       SUM(CAST(amount AS DECIMAL(18, 2))) AS amount,
       MAX(ts) AS last_ts
FROM (
  SELECT DISTINCT order_id, user_id, ts, brand, category, amount, qty, dt
  FROM orders
  WHERE dt >= CAST(CAST($as_of AS DATE) - INTERVAL '90 days' AS VARCHAR)
    AND dt < CAST(CAST($as_of AS DATE) AS VARCHAR)
    AND user_id IS NOT NULL
    AND amount > 0
    AND CAST(CAST(ts AS DATE) AS VARCHAR) = dt
) o
GROUP BY dt, user_id, brand, category
