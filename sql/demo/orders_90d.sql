-- Per user, the purchases of the 90 days before $as_of: orders, spend, the last order's time,
-- and orders and spend of the brand $brand. A merged incremental step over orders_daily
-- (jobs/demo.toml): each day's rows are one per user, and the engine keeps the 90-day sums as
-- state, adding the new day and taking out the day that left the window every night.
-- Money stays DECIMAL: exact, so taking a day out gives the same sums as adding the others up.
SELECT dt, user_id,
       SUM(orders) AS orders_90d,
       SUM(amount) AS amount_90d,
       MAX(last_ts) AS last_order_ts,
       SUM(CASE WHEN brand = $brand THEN orders ELSE 0 END) AS brand_orders_90d,
       SUM(CASE WHEN brand = $brand THEN amount ELSE 0 END) AS brand_amount_90d
FROM orders_daily
WHERE dt >= CAST(CAST($as_of AS DATE) - INTERVAL '90 days' AS VARCHAR)
GROUP BY dt, user_id
