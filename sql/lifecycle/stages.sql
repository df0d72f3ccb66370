-- Lifecycle stage of every user toward the brand $brand over the $window_days days before
-- $as_of: one stage per user, never two; the highest stage whose rule holds wins.
--   advocacy    2 or more purchases of the brand, and shared or recommended it: a share of
--               the brand, or other users brought in through the user's shares of the brand
--   conversion  a purchase of the brand
--   intent      active contact without a purchase: an ad click, like, comment, brand follow or
--               mini-program visit about the brand
--   awareness   passive contact only: ad impressions or article reads about the brand
--   none        no contact with the brand in the window
-- Reads users(user_id), orders(user_id, ts, brand, amount) and
-- social_events(user_id, ts, action, brand, referrer_id). Orders with a zero or negative amount,
-- and anything at or after $as_of, are ignored.
WITH o AS (
    SELECT user_id, COUNT(*) AS purchases
    FROM orders
    WHERE brand = $brand AND amount > 0
      AND ts >= CAST($as_of AS TIMESTAMP) - CAST(concat(CAST($window_days AS VARCHAR), ' days') AS INTERVAL)
      AND ts < CAST($as_of AS TIMESTAMP)
    GROUP BY user_id
),
s AS (
    SELECT user_id,
           COUNT(*) FILTER (WHERE action IN ('ad_impression', 'article_read')) AS passive,
           COUNT(*) FILTER (WHERE action IN ('ad_click', 'like', 'comment', 'follow_brand', 'mini_program_visit')) AS active,
           COUNT(*) FILTER (WHERE action = 'share') AS shares
    FROM social_events
    WHERE brand = $brand
      AND ts >= CAST($as_of AS TIMESTAMP) - CAST(concat(CAST($window_days AS VARCHAR), ' days') AS INTERVAL)
      AND ts < CAST($as_of AS TIMESTAMP)
    GROUP BY user_id
),
referred AS (
    -- Users who came to the brand through someone's share: credit the sharer.
    SELECT referrer_id AS user_id, COUNT(DISTINCT user_id) AS brought_in
    FROM social_events
    WHERE brand = $brand AND referrer_id IS NOT NULL
      AND ts >= CAST($as_of AS TIMESTAMP) - CAST(concat(CAST($window_days AS VARCHAR), ' days') AS INTERVAL)
      AND ts < CAST($as_of AS TIMESTAMP)
    GROUP BY referrer_id
)
SELECT u.user_id,
       $brand AS brand,
       CASE
         WHEN COALESCE(o.purchases, 0) >= 2 AND (COALESCE(s.shares, 0) > 0 OR COALESCE(r.brought_in, 0) > 0) THEN 'advocacy'
         WHEN COALESCE(o.purchases, 0) >= 1 THEN 'conversion'
         WHEN COALESCE(s.active, 0) > 0 THEN 'intent'
         WHEN COALESCE(s.passive, 0) > 0 THEN 'awareness'
         ELSE 'none'
       END AS stage
FROM users u
LEFT JOIN o ON u.user_id = o.user_id
LEFT JOIN s ON u.user_id = s.user_id
LEFT JOIN referred r ON u.user_id = r.user_id
WHERE u.user_id IS NOT NULL
