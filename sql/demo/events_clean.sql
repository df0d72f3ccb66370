-- Clean social events of the 90 days before $as_of (exclusive): known actions only
-- (exact lower-case names), no null user ids, timestamps inside the window.
SELECT user_id, ts, action, brand, topic, referrer_id
FROM social_events
WHERE dt >= CAST(CAST($as_of AS DATE) - INTERVAL '90 days' AS VARCHAR)
  AND dt < CAST(CAST($as_of AS DATE) AS VARCHAR)
  AND user_id IS NOT NULL
  AND action IN ('ad_impression', 'ad_click', 'article_read', 'like', 'share', 'comment',
                 'follow_brand', 'mini_program_visit')
  AND ts >= CAST($as_of AS TIMESTAMP) - INTERVAL '90 days'
  AND ts < CAST($as_of AS TIMESTAMP)
