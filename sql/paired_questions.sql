-- Two arms question by question, the unit of every comparison: $a and $b are arms (every
-- seed's run) or single runs (`sft_random@s1`). Per benchmark and question both answered:
-- how many of each arm's runs got it right, each arm's mean over its seeds, and the
-- difference (a_mean - b_mean), the d_q the report's sign-flip test flips.
WITH a AS (
    SELECT benchmark, question_id, count(*) FILTER (correct) AS a_right, count(*) AS a_runs
    FROM evals WHERE arm = $a OR run = $a GROUP BY benchmark, question_id
),
b AS (
    SELECT benchmark, question_id, count(*) FILTER (correct) AS b_right, count(*) AS b_runs
    FROM evals WHERE arm = $b OR run = $b GROUP BY benchmark, question_id
)
SELECT benchmark, question_id, a_right, a_runs, round(a_right / a_runs, 6) AS a_mean, b_right, b_runs,
       round(b_right / b_runs, 6) AS b_mean, round(a_right / a_runs - b_right / b_runs, 6) AS difference,
       sign(a_right * b_runs - b_right * a_runs)::INTEGER AS ahead  -- integers: no float ties
FROM a JOIN b USING (benchmark, question_id)
ORDER BY benchmark, question_id;
