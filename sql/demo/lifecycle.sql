-- Lifecycle stage of every user toward the brand $brand over the 90 days before $as_of: the
-- rules of the shipped sql/lifecycle/stages.sql, read from the demo's window rollups (kept as
-- state) instead of 90 days of raw events, so a night costs a day here too.
--   advocacy    2 or more purchases of the brand, and shared or recommended it: a share of
--               the brand, or other users brought in through the user's shares of the brand
--   conversion  a purchase of the brand
--   intent      active contact without a purchase: an ad click, like, comment, brand follow or
--               mini-program visit about the brand
--   awareness   passive contact only: ad impressions or article reads about the brand
--   none        no contact with the brand in the window
-- Purchases are orders_daily's: positive amounts, stamped inside their day, exact duplicates
-- counted once.
WITH referred AS (
    SELECT referrer_id AS user_id, COUNT(*) AS brought_in
    FROM reach_90d
    WHERE brand_days > 0
    GROUP BY referrer_id
)
SELECT u.user_id,
       $brand AS brand,
       CASE
         WHEN COALESCE(o.brand_orders_90d, 0) >= 2
              AND (COALESCE(s.brand_shares_90d, 0) > 0 OR COALESCE(r.brought_in, 0) > 0) THEN 'advocacy'
         WHEN COALESCE(o.brand_orders_90d, 0) >= 1 THEN 'conversion'
         WHEN COALESCE(s.brand_active_90d, 0) > 0 THEN 'intent'
         WHEN COALESCE(s.brand_passive_90d, 0) > 0 THEN 'awareness'
         ELSE 'none'
       END AS stage
FROM users u
LEFT JOIN orders_90d o ON u.user_id = o.user_id
LEFT JOIN events_90d s ON u.user_id = s.user_id
LEFT JOIN referred r ON u.user_id = r.user_id
WHERE u.user_id IS NOT NULL
