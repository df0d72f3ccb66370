-- Per user, the purchases of the 30 days before $as_of (see orders_90d.sql).
SELECT dt, user_id,
       SUM(orders) AS orders_30d,
       SUM(amount) AS amount_30d,
       SUM(CASE WHEN brand = $brand THEN orders ELSE 0 END) AS brand_orders_30d
FROM orders_daily
WHERE dt >= CAST(CAST($as_of AS DATE) - INTERVAL '30 days' AS VARCHAR)
GROUP BY dt, user_id
