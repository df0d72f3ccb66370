-- Who came in through whose shares in the 90 days before $as_of: one row per (referrer, user)
-- with the days it happened on, and the days it happened through the brand $brand. Kept as
-- state like order_mix_90d.sql: social reach and the lifecycle's "brought in" count its rows.
SELECT dt, referrer_id, user_id,
       CAST(1 AS BIGINT) AS days,
       CAST(MAX(CASE WHEN brand = $brand THEN 1 ELSE 0 END) AS BIGINT) AS brand_days
FROM referrals_daily
WHERE dt >= CAST(CAST($as_of AS DATE) - INTERVAL '90 days' AS VARCHAR)
GROUP BY dt, referrer_id, user_id
