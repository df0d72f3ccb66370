-- One row per user: purchase features (30 and 90 days), social action counts (30 and 90 days),
-- engagement with the brand given as $brand (90 days), and social reach: how many other users
-- came in through this user's shares (90 days). Rolled up from the per-day partial results of
-- orders_daily, events_daily and referrals_daily (the 90 days before $as_of).
-- Money is summed as DECIMAL: exact, so the result does not depend on the order in which
-- parallel workers add rows up, and reruns give byte-identical files.
WITH o AS (
  SELECT user_id,
         SUM(orders) FILTER (WHERE dt >= CAST(CAST($as_of AS DATE) - INTERVAL '30 days' AS VARCHAR)) AS orders_30d,
         SUM(orders) AS orders_90d,
         SUM(CASE WHEN dt >= CAST(CAST($as_of AS DATE) - INTERVAL '30 days' AS VARCHAR) THEN amount ELSE 0 END) AS amount_30d,
         SUM(amount) AS amount_90d,
         MAX(last_ts) AS last_order_ts,
         SUM(orders) FILTER (WHERE brand = $brand) AS brand_orders_90d,
         SUM(orders) FILTER (WHERE brand = $brand AND dt >= CAST(CAST($as_of AS DATE) - INTERVAL '30 days' AS VARCHAR)) AS brand_orders_30d,
         SUM(CASE WHEN brand = $brand THEN amount ELSE 0 END) AS brand_amount_90d
  FROM orders_daily
  GROUP BY user_id
),
o_brands AS (
  SELECT user_id, COUNT(*) AS distinct_brands_90d
  FROM (SELECT DISTINCT user_id, brand FROM orders_daily) ub
  GROUP BY user_id
),
o_cats AS (
  SELECT user_id, COUNT(*) AS distinct_categories_90d
  FROM (SELECT DISTINCT user_id, category FROM orders_daily) uc
  GROUP BY user_id
),
s AS (
  SELECT user_id,
         SUM(n) FILTER (WHERE action = 'ad_impression' AND dt >= CAST(CAST($as_of AS DATE) - INTERVAL '30 days' AS VARCHAR)) AS ad_impression_30d,
         SUM(n) FILTER (WHERE action = 'ad_click' AND dt >= CAST(CAST($as_of AS DATE) - INTERVAL '30 days' AS VARCHAR)) AS ad_click_30d,
         SUM(n) FILTER (WHERE action = 'article_read' AND dt >= CAST(CAST($as_of AS DATE) - INTERVAL '30 days' AS VARCHAR)) AS article_read_30d,
         SUM(n) FILTER (WHERE action = 'like' AND dt >= CAST(CAST($as_of AS DATE) - INTERVAL '30 days' AS VARCHAR)) AS like_30d,
         SUM(n) FILTER (WHERE action = 'share' AND dt >= CAST(CAST($as_of AS DATE) - INTERVAL '30 days' AS VARCHAR)) AS share_30d,
         SUM(n) FILTER (WHERE action = 'comment' AND dt >= CAST(CAST($as_of AS DATE) - INTERVAL '30 days' AS VARCHAR)) AS comment_30d,
         SUM(n) FILTER (WHERE action = 'follow_brand' AND dt >= CAST(CAST($as_of AS DATE) - INTERVAL '30 days' AS VARCHAR)) AS follow_brand_30d,
         SUM(n) FILTER (WHERE action = 'mini_program_visit' AND dt >= CAST(CAST($as_of AS DATE) - INTERVAL '30 days' AS VARCHAR)) AS mini_program_visit_30d,
         SUM(n) FILTER (WHERE action = 'ad_impression') AS ad_impression_90d,
         SUM(n) FILTER (WHERE action = 'ad_click') AS ad_click_90d,
         SUM(n) FILTER (WHERE action = 'article_read') AS article_read_90d,
         SUM(n) FILTER (WHERE action = 'like') AS like_90d,
         SUM(n) FILTER (WHERE action = 'share') AS share_90d,
         SUM(n) FILTER (WHERE action = 'comment') AS comment_90d,
         SUM(n) FILTER (WHERE action = 'follow_brand') AS follow_brand_90d,
         SUM(n) FILTER (WHERE action = 'mini_program_visit') AS mini_program_visit_90d,
         SUM(n) FILTER (WHERE brand = $brand AND action = 'ad_impression') AS brand_impressions_90d,
         SUM(n) FILTER (WHERE brand = $brand AND action IN ('ad_click', 'article_read', 'like', 'comment', 'follow_brand', 'mini_program_visit')) AS brand_engagements_90d,
         SUM(n) FILTER (WHERE brand = $brand AND action = 'share') AS brand_shares_90d
  FROM events_daily
  GROUP BY user_id
),
reach AS (
  SELECT referrer_id AS user_id, COUNT(*) AS social_reach_90d
  FROM (SELECT DISTINCT referrer_id, user_id FROM referrals_daily) r
  GROUP BY referrer_id
)
SELECT u.user_id,
       u.imei,
       u.oaid,
       u.idfa,
       u.phone,
       COALESCE(u.age, 35) AS age,
       u.gender,
       u.city_tier,
       COALESCE(o.orders_30d, 0) AS orders_30d,
       COALESCE(o.orders_90d, 0) AS orders_90d,
       CAST(COALESCE(o.amount_30d, 0) AS DOUBLE) AS amount_30d,
       CAST(COALESCE(o.amount_90d, 0) AS DOUBLE) AS amount_90d,
       CASE WHEN COALESCE(o.orders_90d, 0) > 0
            THEN CAST(o.amount_90d AS DOUBLE) / CAST(o.orders_90d AS DOUBLE) ELSE 0.0 END AS avg_order_value_90d,
       CAST(CAST($as_of AS DATE) - u.signup_date AS BIGINT) AS tenure_days,
       CASE WHEN o.last_order_ts IS NULL THEN 91
            ELSE CAST(CAST($as_of AS DATE) - CAST(o.last_order_ts AS DATE) AS BIGINT) END AS recency_days,
       COALESCE(b.distinct_brands_90d, 0) AS distinct_brands_90d,
       COALESCE(c.distinct_categories_90d, 0) AS distinct_categories_90d,
       COALESCE(s.ad_impression_30d, 0) AS ad_impression_30d,
       COALESCE(s.ad_click_30d, 0) AS ad_click_30d,
       COALESCE(s.article_read_30d, 0) AS article_read_30d,
       COALESCE(s.like_30d, 0) AS like_30d,
       COALESCE(s.share_30d, 0) AS share_30d,
       COALESCE(s.comment_30d, 0) AS comment_30d,
       COALESCE(s.follow_brand_30d, 0) AS follow_brand_30d,
       COALESCE(s.mini_program_visit_30d, 0) AS mini_program_visit_30d,
       COALESCE(s.ad_impression_90d, 0) AS ad_impression_90d,
       COALESCE(s.ad_click_90d, 0) AS ad_click_90d,
       COALESCE(s.article_read_90d, 0) AS article_read_90d,
       COALESCE(s.like_90d, 0) AS like_90d,
       COALESCE(s.share_90d, 0) AS share_90d,
       COALESCE(s.comment_90d, 0) AS comment_90d,
       COALESCE(s.follow_brand_90d, 0) AS follow_brand_90d,
       COALESCE(s.mini_program_visit_90d, 0) AS mini_program_visit_90d,
       COALESCE(o.brand_orders_90d, 0) AS brand_orders_90d,
       COALESCE(o.brand_orders_30d, 0) AS brand_orders_30d,
       CAST(COALESCE(o.brand_amount_90d, 0) AS DOUBLE) AS brand_amount_90d,
       COALESCE(s.brand_impressions_90d, 0) AS brand_impressions_90d,
       COALESCE(s.brand_engagements_90d, 0) AS brand_engagements_90d,
       COALESCE(s.brand_shares_90d, 0) AS brand_shares_90d,
       COALESCE(r.social_reach_90d, 0) AS social_reach_90d
FROM users u
LEFT JOIN o ON u.user_id = o.user_id
LEFT JOIN o_brands b ON u.user_id = b.user_id
LEFT JOIN o_cats c ON u.user_id = c.user_id
LEFT JOIN s ON u.user_id = s.user_id
LEFT JOIN reach r ON u.user_id = r.user_id
