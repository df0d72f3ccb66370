-- Reference job step (a): one row per row of `users` with the behavioural features.
-- Windows relative to $as_of (A): 90d = [A - 90 days, A), 30d = [A - 30 days, A).
-- Orders come cleaned and de-duplicated from the step `orders_90d`; the top-3 categories from
-- `top_categories` (a 3-row table: the join with it is cheap because it is materialised).
-- Money is summed as DECIMAL (amounts have 2 decimals): exact and independent of the order in
-- which parallel workers add rows up, so reruns are byte-identical.
-- Social events: user_id not null, ts in the 90d window, one of the 8 known lower-case actions.
WITH o_ub AS (
  -- One scan of the orders: per (user, brand) sums, rolled up per user below; counting the
  -- rolled-up rows gives the distinct-brand count without COUNT(DISTINCT).
  SELECT o.user_id, o.brand,
         COUNT(*) AS n,
         SUM(CAST(o.amount AS DECIMAL(18, 2))) AS amount,
         MAX(o.ts) AS last_ts,
         SUM(CASE WHEN t.category IS NOT NULL THEN CAST(o.amount AS DECIMAL(18, 2)) ELSE 0 END) AS top3_amount,
         COUNT(*) FILTER (WHERE o.ts >= CAST($as_of AS TIMESTAMP) - INTERVAL '30 days') AS n_30d
  FROM orders_90d o LEFT JOIN top_categories t ON o.category = t.category
  GROUP BY o.user_id, o.brand
),
o_feat AS (
  SELECT user_id,
         SUM(n) AS orders_90d,
         SUM(amount) AS amount_90d,
         MAX(last_ts) AS last_order_ts,
         COUNT(*) AS distinct_brands_90d,
         SUM(top3_amount) AS top3cat_amount_90d,
         SUM(CASE WHEN brand = 'B01' THEN n ELSE 0 END) AS b01_orders_90d,
         SUM(CASE WHEN brand = 'B01' THEN amount ELSE 0 END) AS b01_amount_90d,
         SUM(CASE WHEN brand = 'B01' THEN n_30d ELSE 0 END) AS b01_orders_30d
  FROM o_ub
  GROUP BY user_id
),
s30 AS (
  -- Social counts of the last 30 days: only those rows are grouped.
  SELECT user_id,
         COUNT(*) FILTER (WHERE action = 'ad_impression') AS ad_impression_30d,
         COUNT(*) FILTER (WHERE action = 'ad_click') AS ad_click_30d,
         COUNT(*) FILTER (WHERE action = 'article_read') AS article_read_30d,
         COUNT(*) FILTER (WHERE action = 'like') AS like_30d,
         COUNT(*) FILTER (WHERE action = 'share') AS share_30d,
         COUNT(*) FILTER (WHERE action = 'comment') AS comment_30d,
         COUNT(*) FILTER (WHERE action = 'follow_brand') AS follow_brand_30d,
         COUNT(*) FILTER (WHERE action = 'mini_program_visit') AS mini_program_visit_30d
  FROM social_events
  WHERE user_id IS NOT NULL
    AND ts >= CAST($as_of AS TIMESTAMP) - INTERVAL '30 days'
    AND ts < CAST($as_of AS TIMESTAMP)
    AND action IN ('ad_impression', 'ad_click', 'article_read', 'like', 'share', 'comment', 'follow_brand', 'mini_program_visit')
  GROUP BY user_id
),
sb AS (
  -- B01 counts of the 90 days: only B01 rows are grouped.
  SELECT user_id,
         COUNT(*) FILTER (WHERE action = 'ad_impression') AS b01_ad_impression_90d,
         COUNT(*) FILTER (WHERE action = 'ad_click') AS b01_ad_click_90d,
         COUNT(*) FILTER (WHERE action = 'article_read') AS b01_article_read_90d,
         COUNT(*) FILTER (WHERE action = 'like') AS b01_like_90d,
         COUNT(*) FILTER (WHERE action = 'share') AS b01_share_90d,
         COUNT(*) FILTER (WHERE action = 'comment') AS b01_comment_90d,
         COUNT(*) FILTER (WHERE action = 'follow_brand') AS b01_follow_brand_90d,
         COUNT(*) FILTER (WHERE action = 'mini_program_visit') AS b01_mini_program_visit_90d
  FROM social_events
  WHERE user_id IS NOT NULL
    AND brand = 'B01'
    AND ts >= CAST($as_of AS TIMESTAMP) - INTERVAL '90 days'
    AND ts < CAST($as_of AS TIMESTAMP)
    AND action IN ('ad_impression', 'ad_click', 'article_read', 'like', 'share', 'comment', 'follow_brand', 'mini_program_visit')
  GROUP BY user_id
)
SELECT u.user_id,
       u.device_id,
       u.oaid,
       COALESCE(u.age, 35) AS age,
       u.city_tier,
       COALESCE(o.orders_90d, 0) AS orders_90d,
       CAST(COALESCE(o.amount_90d, 0) AS DOUBLE) AS amount_90d,
       CASE WHEN o.last_order_ts IS NULL THEN 91
            ELSE CAST(CAST($as_of AS DATE) - CAST(o.last_order_ts AS DATE) AS BIGINT) END AS recency_days,
       COALESCE(o.distinct_brands_90d, 0) AS distinct_brands_90d,
       CASE WHEN o.amount_90d > 0 THEN CAST(o.top3cat_amount_90d AS DOUBLE) / CAST(o.amount_90d AS DOUBLE) ELSE 0.0 END AS top3cat_share_90d,
       COALESCE(o.b01_orders_90d, 0) AS b01_orders_90d,
       CAST(COALESCE(o.b01_amount_90d, 0) AS DOUBLE) AS b01_amount_90d,
       COALESCE(o.b01_orders_30d, 0) AS b01_orders_30d,
       COALESCE(s.ad_impression_30d, 0) AS ad_impression_30d,
       COALESCE(s.ad_click_30d, 0) AS ad_click_30d,
       COALESCE(s.article_read_30d, 0) AS article_read_30d,
       COALESCE(s.like_30d, 0) AS like_30d,
       COALESCE(s.share_30d, 0) AS share_30d,
       COALESCE(s.comment_30d, 0) AS comment_30d,
       COALESCE(s.follow_brand_30d, 0) AS follow_brand_30d,
       COALESCE(s.mini_program_visit_30d, 0) AS mini_program_visit_30d,
       COALESCE(sb.b01_ad_impression_90d, 0) AS b01_ad_impression_90d,
       COALESCE(sb.b01_ad_click_90d, 0) AS b01_ad_click_90d,
       COALESCE(sb.b01_article_read_90d, 0) AS b01_article_read_90d,
       COALESCE(sb.b01_like_90d, 0) AS b01_like_90d,
       COALESCE(sb.b01_share_90d, 0) AS b01_share_90d,
       COALESCE(sb.b01_comment_90d, 0) AS b01_comment_90d,
       COALESCE(sb.b01_follow_brand_90d, 0) AS b01_follow_brand_90d,
       COALESCE(sb.b01_mini_program_visit_90d, 0) AS b01_mini_program_visit_90d
FROM users u
LEFT JOIN o_feat o ON u.user_id = o.user_id
LEFT JOIN s30 s ON u.user_id = s.user_id
LEFT JOIN sb ON u.user_id = sb.user_id
