-- Reference job: the 3 globally top categories by total 90-day spend (ties by name).
SELECT category
FROM (SELECT category, SUM(CAST(amount AS DECIMAL(18, 2))) AS spend FROM orders_90d GROUP BY category) c
ORDER BY spend DESC, category
LIMIT 3
