-- Two arms on the same questions, per benchmark, each question counted once: $a and $b are
-- arms (every seed's run) or single runs (`sft_random@s1`). Each arm's answers are averaged
-- per question over its seeds (sql/paired_questions.sql lists them); n counts the questions
-- both answered, a_ahead / b_ahead the questions where one arm's mean is above the other's,
-- and the accuracies are the means of those per-question means: the report's numbers.
-- p_value: where each side is one run, the exact McNemar p, 2 P(X <= min(a_ahead, b_ahead))
-- capped at 1 for X ~ Binomial(a_ahead + b_ahead, 1/2), which equals the report's sign-flip
-- p; with several seeds on either side it is NULL: the exact sign-flip p, the intervals and
-- the verdict come from `winnow compare RUN A B` (SQL has no exact test over seed means).
WITH a AS (
    SELECT benchmark, question_id, count(*) FILTER (correct) AS a_right, count(*) AS a_runs
    FROM evals WHERE arm = $a OR run = $a GROUP BY benchmark, question_id
),
b AS (
    SELECT benchmark, question_id, count(*) FILTER (correct) AS b_right, count(*) AS b_runs
    FROM evals WHERE arm = $b OR run = $b GROUP BY benchmark, question_id
),
counts AS (
    SELECT benchmark, count(*) AS n, max(a_runs) AS a_seeds, max(b_runs) AS b_seeds,
           avg(a_right / a_runs) AS a_accuracy, avg(b_right / b_runs) AS b_accuracy,
           count(*) FILTER (a_right * b_runs > b_right * a_runs) AS a_ahead,  -- integers: no float ties
           count(*) FILTER (a_right * b_runs < b_right * a_runs) AS b_ahead
    FROM a JOIN b USING (benchmark, question_id)
    GROUP BY benchmark
),
tails AS (  -- P(X <= k) for X ~ Binomial(d, 1/2): lgamma keeps the binomial coefficients finite
    SELECT benchmark,
           sum(exp(lgamma(d + 1) - lgamma(k + 1) - lgamma(d - k + 1) - d * ln(2))) AS lower_tail
    FROM (SELECT benchmark, a_ahead + b_ahead AS d, unnest(range(least(a_ahead, b_ahead) + 1)) AS k FROM counts)
    GROUP BY benchmark
)
SELECT benchmark, n, a_seeds, b_seeds, round(a_accuracy, 6) AS a_accuracy, round(b_accuracy, 6) AS b_accuracy,
       round(a_accuracy - b_accuracy, 6) AS difference,  -- p below is never rounded
       a_ahead, b_ahead, n - a_ahead - b_ahead AS tied,
       CASE WHEN a_seeds > 1 OR b_seeds > 1 THEN NULL
            WHEN a_ahead = b_ahead THEN 1.0
            ELSE least(1.0, greatest(2 * lower_tail, 2.2250738585072014e-308)) END AS p_value  -- never 0, as in the report
FROM counts JOIN tails USING (benchmark)
ORDER BY benchmark;
