-- Per-customer summary for lifetime value (BG/NBD + Gamma-Gamma), from orders(user_id, ts, amount).
--
-- A purchase is a customer's day with orders: several orders on one day are one purchase, their
-- amounts summed (as in Fader, Hardie & Lee's CDNOW analysis).
--   frequency  purchases after the first one (repeat purchases)
--   recency    time from the first purchase to the last one
--   age        time from the first purchase to the end of the window (the day before $as_of)
--   monetary   mean value of the repeat purchases (0 without one)
-- Times are in units of $unit_days days (7 for weeks). Orders on or after $as_of (in the future
-- of the run), without a user, or with a negative amount (refunds, errors) are left out; an
-- order of amount 0 is a purchase worth 0 (the ltv step leaves it out of the spend fit).
-- Money is summed as DECIMAL (cents): exact, so the result does not depend on the order in
-- which parallel workers add rows up.
WITH purchases AS (
    SELECT user_id, CAST(ts AS DATE) AS day, SUM(CAST(amount AS DECIMAL(18, 2))) AS amount
    FROM orders
    WHERE user_id IS NOT NULL
      AND amount >= 0
      AND ts < CAST($as_of AS TIMESTAMP)
    GROUP BY user_id, CAST(ts AS DATE)
),
firsts AS (
    SELECT user_id, MIN(day) AS first_day
    FROM purchases
    GROUP BY user_id
)
SELECT p.user_id,
       CAST(COUNT(*) - 1 AS DOUBLE) AS frequency,
       CAST(MAX(p.day) - f.first_day AS DOUBLE) / $unit_days AS recency,
       (CAST(CAST($as_of AS DATE) - f.first_day AS DOUBLE) - 1) / $unit_days AS age,
       CAST(COALESCE(AVG(CASE WHEN p.day > f.first_day THEN p.amount END), 0) AS DOUBLE) AS monetary
FROM purchases p
JOIN firsts f ON p.user_id = f.user_id
GROUP BY p.user_id, f.first_day
