-- One row per user: purchase features (30 and 90 days), social action counts (30 and 90 days),
-- engagement with the brand given as $brand (90 days), and social reach: how many other users
-- came in through this user's shares (90 days). Joins the users to the window rollups
-- (orders_90d, orders_30d, order_mix_90d, events_90d, events_30d, reach_90d): merged
-- incremental steps kept as state, so a night reads one row per user, not 90 days of rows.
-- Money is summed as DECIMAL: exact, so the result does not depend on the order in which
-- parallel workers add rows up, and reruns give byte-identical files.
-- Identifiers (devices, phone, email) stay in the users table: segment files join them from
-- there and hash them, so no exported table carries a raw identifier.
WITH o AS (
  SELECT n.user_id, n.orders_90d, n.amount_90d, n.last_order_ts, n.brand_orders_90d,
         n.brand_amount_90d, t.orders_30d, t.amount_30d, t.brand_orders_30d
  FROM orders_90d n LEFT JOIN orders_30d t ON n.user_id = t.user_id
),
-- Distinct values as rows then counts: COUNT(DISTINCT) keeps a set per user (1,000,000 sets).
o_brands AS (
  SELECT user_id, COUNT(*) AS distinct_brands_90d
  FROM (SELECT DISTINCT user_id, brand FROM order_mix_90d) ub
  GROUP BY user_id
),
o_cats AS (
  SELECT user_id, COUNT(*) AS distinct_categories_90d
  FROM (SELECT DISTINCT user_id, category FROM order_mix_90d) uc
  GROUP BY user_id
),
s AS (
  SELECT n.*, t.ad_impression_30d, t.ad_click_30d, t.article_read_30d, t.like_30d, t.share_30d,
         t.comment_30d, t.follow_brand_30d, t.mini_program_visit_30d
  FROM events_90d n LEFT JOIN events_30d t ON n.user_id = t.user_id
),
reach AS (
  SELECT referrer_id AS user_id, COUNT(*) AS social_reach_90d
  FROM reach_90d
  GROUP BY referrer_id
)
SELECT u.user_id,
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
