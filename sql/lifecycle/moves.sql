-- The decision path: each user's move between the previous run's stage and this run's.
-- `previous_lifecycle` is the lifecycle table the previous published run wrote (empty on the
-- first run, when every user comes from 'new'). A user missing from the previous run also
-- comes from 'new'. Segments select from it, e.g. users who moved from intent to conversion:
--   SELECT user_id FROM lifecycle_moves WHERE from_stage = 'intent' AND to_stage = 'conversion'
SELECT c.user_id,
       c.brand,
       COALESCE(p.stage, 'new') AS from_stage,
       c.stage AS to_stage,
       COALESCE(p.stage, 'new') <> c.stage AS moved
FROM lifecycle c
LEFT JOIN previous_lifecycle p ON c.user_id = p.user_id AND c.brand = p.brand
