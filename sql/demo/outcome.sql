-- The campaign's outcome, from the brand's own orders: who bought the brand in [$start, $end)
-- and for how much. `audiences measure` reads it over the campaign (and the window before it,
-- to reduce variance); `audiences plan` over past windows, for the baseline.
SELECT user_id, COUNT(*) > 0 AS converted, SUM(amount) AS value
FROM orders
WHERE brand = $brand
  AND dt >= CAST($start AS VARCHAR) AND dt < CAST($end AS VARCHAR)
GROUP BY user_id
