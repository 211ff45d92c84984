-- Allocation `global`: the first $budget rows of the ranking. Reads `ranked`.
SELECT id, position::INTEGER AS rank
FROM ranked
WHERE position <= $budget
ORDER BY position
