-- A customer's purchases per day, for the lifetime-value summary. A merged incremental step
-- (jobs/demo.toml): the engine keeps one row per customer over the last two years of orders and
-- merges each new day into it (first and last purchase day by min and max, purchase days and
-- spend by sum, the first day's spend by "first by first_day"), instead of re-reading every
-- order every night.
-- A purchase is a customer's day with orders (the day the orders landed), their amounts summed:
-- several orders on one day are one purchase. Orders without a user or with a negative amount
-- (refunds, errors) are left out; an order of amount 0 is a purchase worth 0. Money is summed
-- as DECIMAL: exact, so merging day by day gives the same sums as merging all days at once.
SELECT dt, user_id,
       CAST(dt AS DATE) AS first_day,
       CAST(dt AS DATE) AS last_day,
       CAST(1 AS BIGINT) AS purchase_days,
       SUM(CAST(amount AS DECIMAL(18, 2))) AS amount,
       SUM(CAST(amount AS DECIMAL(18, 2))) AS first_amount
FROM orders
WHERE dt >= CAST(CAST($as_of AS DATE) - INTERVAL '730 days' AS VARCHAR)
  AND dt < CAST(CAST($as_of AS DATE) AS VARCHAR)
  AND user_id IS NOT NULL
  AND amount >= 0
GROUP BY dt, user_id
