-- The brands and categories each user bought in the 90 days before $as_of: one row per
-- (user, brand, category) with the days it was bought on. Distinct counts over a window cannot
-- be merged from per-day counts, but these rows can: a pair whose days drop to 0 leaves, and
-- user_features.sql counts what is left.
SELECT dt, user_id, brand, category, CAST(1 AS BIGINT) AS days
FROM orders_daily
WHERE dt >= CAST(CAST($as_of AS DATE) - INTERVAL '90 days' AS VARCHAR)
GROUP BY dt, user_id, brand, category
