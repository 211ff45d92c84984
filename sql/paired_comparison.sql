-- Two arms on the same questions, per benchmark: $a and $b are arms (every seed's run
-- pooled) or single runs (`sft_random@s1`). Seed i of one arm pairs with seed i of the
-- other, the shorter list repeating. Accuracies are each arm's mean over its runs on the
-- questions both answered; `mcnemar_p` is the exact two-sided McNemar p-value,
-- min(1, 2 P(X <= min(only_a, only_b))) for X ~ Binomial(only_a + only_b, 1/2).
-- `winnow compare RUN A B` adds the bootstrap interval of the difference and the verdict.
WITH a AS (
    SELECT benchmark, question_id, correct::INTEGER AS correct,
           dense_rank() OVER (ORDER BY seed NULLS FIRST, run) - 1 AS i
    FROM evals WHERE arm = $a OR run = $a
),
b AS (
    SELECT benchmark, question_id, correct::INTEGER AS correct,
           dense_rank() OVER (ORDER BY seed NULLS FIRST, run) - 1 AS i
    FROM evals WHERE arm = $b OR run = $b
),
shared AS (
    SELECT DISTINCT benchmark, question_id FROM a SEMI JOIN b USING (benchmark, question_id)
),
slots AS (
    SELECT unnest(range(greatest(ka, kb))) AS r, ka, kb
    FROM (SELECT (SELECT max(i) + 1 FROM a) AS ka, (SELECT max(i) + 1 FROM b) AS kb)
),
pairs AS (
    SELECT a.benchmark, a.correct AS a_correct, b.correct AS b_correct
    FROM slots
    JOIN a ON a.i = slots.r % slots.ka
    JOIN b ON b.i = slots.r % slots.kb AND b.benchmark = a.benchmark AND b.question_id = a.question_id
),
counts AS (
    SELECT benchmark, count(*) AS pairs,
           count(*) FILTER (a_correct = 1 AND b_correct = 1) AS both_right,
           count(*) FILTER (a_correct = 1 AND b_correct = 0) AS only_a,
           count(*) FILTER (a_correct = 0 AND b_correct = 1) AS only_b,
           count(*) FILTER (a_correct = 0 AND b_correct = 0) AS both_wrong
    FROM pairs GROUP BY benchmark
),
accuracy AS (
    SELECT benchmark, n, a_accuracy, b_accuracy
    FROM (SELECT benchmark, count(*) AS n FROM shared GROUP BY benchmark)
    JOIN (SELECT benchmark, avg(correct) AS a_accuracy FROM a SEMI JOIN shared USING (benchmark, question_id)
          GROUP BY benchmark) USING (benchmark)
    JOIN (SELECT benchmark, avg(correct) AS b_accuracy FROM b SEMI JOIN shared USING (benchmark, question_id)
          GROUP BY benchmark) USING (benchmark)
),
tails AS (  -- P(X <= k) for X ~ Binomial(d, 1/2): lgamma keeps the binomial coefficients finite
    SELECT benchmark,
           sum(exp(lgamma(d + 1) - lgamma(k + 1) - lgamma(d - k + 1) - d * ln(2))) AS lower_tail
    FROM (SELECT benchmark, only_a + only_b AS d, unnest(range(least(only_a, only_b) + 1)) AS k FROM counts)
    GROUP BY benchmark
)
SELECT benchmark, n, pairs, round(a_accuracy, 4) AS a_accuracy, round(b_accuracy, 4) AS b_accuracy,
       round(a_accuracy - b_accuracy, 4) AS difference, both_right, only_a, only_b, both_wrong,
       CASE WHEN only_a + only_b = 0 OR only_a = only_b THEN 1.0
            ELSE round(least(1.0, 2 * lower_tail), 6) END AS mcnemar_p
FROM counts JOIN accuracy USING (benchmark) JOIN tails USING (benchmark)
ORDER BY benchmark;
