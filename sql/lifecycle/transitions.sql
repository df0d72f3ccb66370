-- The transition matrix: users per (from stage, to stage) since the previous run.
SELECT brand, from_stage, to_stage, COUNT(*) AS users
FROM lifecycle_moves
GROUP BY brand, from_stage, to_stage
ORDER BY brand, from_stage, to_stage
