-- Per user, social actions of the 30 days before $as_of by action (see events_90d.sql).
SELECT dt, user_id,
       SUM(CASE WHEN action = 'ad_impression' THEN n ELSE 0 END) AS ad_impression_30d,
       SUM(CASE WHEN action = 'ad_click' THEN n ELSE 0 END) AS ad_click_30d,
       SUM(CASE WHEN action = 'article_read' THEN n ELSE 0 END) AS article_read_30d,
       SUM(CASE WHEN action = 'like' THEN n ELSE 0 END) AS like_30d,
       SUM(CASE WHEN action = 'share' THEN n ELSE 0 END) AS share_30d,
       SUM(CASE WHEN action = 'comment' THEN n ELSE 0 END) AS comment_30d,
       SUM(CASE WHEN action = 'follow_brand' THEN n ELSE 0 END) AS follow_brand_30d,
       SUM(CASE WHEN action = 'mini_program_visit' THEN n ELSE 0 END) AS mini_program_visit_30d
FROM events_daily
WHERE dt >= CAST(CAST($as_of AS DATE) - INTERVAL '30 days' AS VARCHAR)
GROUP BY dt, user_id
