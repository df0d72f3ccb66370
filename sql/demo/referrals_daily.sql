-- Per day, the distinct (referrer, user, brand) triples: users who came in through another
-- user's share of a brand. An incremental step: reach_90d.sql keeps the window's pairs.
SELECT DISTINCT dt, referrer_id, user_id, brand
FROM social_events
WHERE dt >= CAST(CAST($as_of AS DATE) - INTERVAL '90 days' AS VARCHAR)
  AND dt < CAST(CAST($as_of AS DATE) AS VARCHAR)
  AND user_id IS NOT NULL
  AND referrer_id IS NOT NULL
  AND action IN ('ad_impression', 'ad_click', 'article_read', 'like', 'share', 'comment',
                 'follow_brand', 'mini_program_visit')
  AND CAST(CAST(ts AS DATE) AS VARCHAR) = dt
