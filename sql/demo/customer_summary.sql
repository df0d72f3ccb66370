-- Per-customer summary for lifetime value (BG/NBD + Gamma-Gamma) from the merged purchases of
-- customer_purchases.sql: one row per customer, in units of $unit_days days (7 for weeks).
--   frequency  purchases after the first one (repeat purchases)
--   recency    time from the first purchase to the last one
--   age        time from the first purchase to the end of the window (the day before $as_of)
--   monetary   mean value of the repeat purchases (0 without one)
SELECT user_id,
       CAST(purchase_days - 1 AS DOUBLE) AS frequency,
       CAST(last_day - first_day AS DOUBLE) / $unit_days AS recency,
       (CAST(CAST($as_of AS DATE) - first_day AS DOUBLE) - 1) / $unit_days AS age,
       CASE WHEN purchase_days > 1
            THEN CAST(amount - first_amount AS DOUBLE) / CAST(purchase_days - 1 AS DOUBLE)
            ELSE 0.0 END AS monetary
FROM customer_purchases
