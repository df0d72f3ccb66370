-- Per day, the distinct (referrer, user) pairs: users who came in through another user's
-- share. An incremental step: the window's reach is the distinct pairs over its days.
SELECT DISTINCT dt, referrer_id, user_id
FROM social_events
WHERE dt >= CAST(CAST($as_of AS DATE) - INTERVAL '90 days' AS VARCHAR)
  AND dt < CAST(CAST($as_of AS DATE) AS VARCHAR)
  AND user_id IS NOT NULL
  AND referrer_id IS NOT NULL
  AND action IN ('ad_impression', 'ad_click', 'article_read', 'like', 'share', 'comment',
                 'follow_brand', 'mini_program_visit')
  AND CAST(CAST(ts AS DATE) AS VARCHAR) = dt
