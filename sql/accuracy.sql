-- Accuracy of every evaluated arm (each seed's run its own row) on every benchmark, with its
-- n and 95% Wilson interval, and the verdict against the baseline arm (failed generations
-- count as wrong; `no_answer`: outputs with no final answer found). The report's `results`
-- table pools each arm's seeds.
SELECT arm, benchmark, n, round(accuracy, 3) AS accuracy,
       round(accuracy_low, 3) AS low, round(accuracy_high, 3) AS high,
       no_answer, truncated, verdict
FROM eval_summary
ORDER BY benchmark, accuracy DESC, arm;
