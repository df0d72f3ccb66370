-- Per user, social actions of the 90 days before $as_of by action, and contact with the brand
-- $brand: impressions, engagements (clicks, reads, likes, comments, follows, mini-program
-- visits), shares, and the lifecycle's passive (impressions, reads) and active contact. A
-- merged incremental step over events_daily: the 90-day sums are kept as state and each night
-- adds the new day and takes out the day that left the window.
SELECT dt, user_id,
       SUM(CASE WHEN action = 'ad_impression' THEN n ELSE 0 END) AS ad_impression_90d,
       SUM(CASE WHEN action = 'ad_click' THEN n ELSE 0 END) AS ad_click_90d,
       SUM(CASE WHEN action = 'article_read' THEN n ELSE 0 END) AS article_read_90d,
       SUM(CASE WHEN action = 'like' THEN n ELSE 0 END) AS like_90d,
       SUM(CASE WHEN action = 'share' THEN n ELSE 0 END) AS share_90d,
       SUM(CASE WHEN action = 'comment' THEN n ELSE 0 END) AS comment_90d,
       SUM(CASE WHEN action = 'follow_brand' THEN n ELSE 0 END) AS follow_brand_90d,
       SUM(CASE WHEN action = 'mini_program_visit' THEN n ELSE 0 END) AS mini_program_visit_90d,
       SUM(CASE WHEN brand = $brand AND action = 'ad_impression' THEN n ELSE 0 END) AS brand_impressions_90d,
       SUM(CASE WHEN brand = $brand AND action IN ('ad_click', 'article_read', 'like', 'comment', 'follow_brand', 'mini_program_visit') THEN n ELSE 0 END) AS brand_engagements_90d,
       SUM(CASE WHEN brand = $brand AND action = 'share' THEN n ELSE 0 END) AS brand_shares_90d,
       SUM(CASE WHEN brand = $brand AND action IN ('ad_impression', 'article_read') THEN n ELSE 0 END) AS brand_passive_90d,
       SUM(CASE WHEN brand = $brand AND action IN ('ad_click', 'like', 'comment', 'follow_brand', 'mini_program_visit') THEN n ELSE 0 END) AS brand_active_90d
FROM events_daily
WHERE dt >= CAST(CAST($as_of AS DATE) - INTERVAL '90 days' AS VARCHAR)
GROUP BY dt, user_id
