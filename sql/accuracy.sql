-- Accuracy of every evaluated arm on every benchmark (failed generations count as wrong;
-- `no_answer`: outputs with no final answer found).
SELECT arm, benchmark, n, round(accuracy, 3) AS accuracy, no_answer, truncated
FROM eval_summary
ORDER BY benchmark, accuracy DESC, arm;
