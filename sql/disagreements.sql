-- The questions on which two arms disagree, per benchmark: $a and $b are arms (every seed's
-- run pooled) or single runs (`sft_random@s1`). `a_right` counts A's runs that got the
-- question right, of `a_runs`; a question is listed when the share of runs right differs.
-- Each arm's extracted answers are listed by seed, so a seed's run can be told apart.
WITH a AS (
    SELECT benchmark, question_id, any_value(gold) AS gold, count(*) AS a_runs,
           count(*) FILTER (correct) AS a_right,
           list(extracted ORDER BY seed NULLS FIRST, run) AS a_extracted
    FROM evals WHERE arm = $a OR run = $a GROUP BY benchmark, question_id
),
b AS (
    SELECT benchmark, question_id, count(*) AS b_runs,
           count(*) FILTER (correct) AS b_right,
           list(extracted ORDER BY seed NULLS FIRST, run) AS b_extracted
    FROM evals WHERE arm = $b OR run = $b GROUP BY benchmark, question_id
)
SELECT benchmark, question_id, gold, a_right, a_runs, b_right, b_runs, a_extracted, b_extracted
FROM a JOIN b USING (benchmark, question_id)
WHERE a_right * b_runs <> b_right * a_runs
ORDER BY benchmark, (a_right / a_runs) - (b_right / b_runs) DESC, question_id;
