-- Reference job step (b): each user's lifecycle stage toward B01 over the 90-day window.
-- The highest stage whose rule holds wins:
--   advocacy   at least 2 B01 orders and at least 1 B01 share
--   conversion at least 1 B01 order
--   intent     a B01 click, read, like, follow or mini-program visit (and no B01 order)
--   awareness  a B01 ad impression only (a B01 share or comment alone is not intent)
--   none       no B01 contact
SELECT user_id,
       CASE
         WHEN b01_orders_90d >= 2 AND b01_share_90d > 0 THEN 'advocacy'
         WHEN b01_orders_90d > 0 THEN 'conversion'
         WHEN (b01_ad_click_90d > 0 OR b01_article_read_90d > 0 OR b01_like_90d > 0
               OR b01_follow_brand_90d > 0 OR b01_mini_program_visit_90d > 0) THEN 'intent'
         WHEN b01_ad_impression_90d > 0 THEN 'awareness'
         ELSE 'none'
       END AS stage
FROM user_features
