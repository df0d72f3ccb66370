-- Social actions per day, user, action and brand (counts). An incremental step: see
-- orders_daily.sql. Known actions only (exact lower-case names), no null user ids, events
-- stamped inside their day partition.
SELECT dt, user_id, action, brand, COUNT(*) AS n
FROM social_events
WHERE dt >= CAST(CAST($as_of AS DATE) - INTERVAL '90 days' AS VARCHAR)
  AND dt < CAST(CAST($as_of AS DATE) AS VARCHAR)
  AND user_id IS NOT NULL
  AND action IN ('ad_impression', 'ad_click', 'article_read', 'like', 'share', 'comment',
                 'follow_brand', 'mini_program_visit')
  AND CAST(CAST(ts AS DATE) AS VARCHAR) = dt
GROUP BY dt, user_id, action, brand
