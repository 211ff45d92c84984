-- The report's evidence for a comparison: up to 5 questions per benchmark on which $a and $b
-- disagree (as sql/disagreements.sql: arms pool every seed's run, or `sft_random@s1` is one
-- run), drawn in a seeded md5 order of the question id, so they are neither the first
-- questions nor only one arm's wins. `disagreeing` counts every such question on the
-- benchmark; each arm's extracted answers are listed by run, in seed order, beside `*_seeds`.
WITH a AS (
    SELECT benchmark, question_id, any_value(gold) AS gold, count(*) AS a_runs,
           count(*) FILTER (correct) AS a_right,
           list(seed ORDER BY seed NULLS FIRST, run) AS a_seeds,
           list(extracted ORDER BY seed NULLS FIRST, run) AS a_extracted
    FROM evals WHERE arm = $a OR run = $a GROUP BY benchmark, question_id
),
b AS (
    SELECT benchmark, question_id, count(*) AS b_runs,
           count(*) FILTER (correct) AS b_right,
           list(seed ORDER BY seed NULLS FIRST, run) AS b_seeds,
           list(extracted ORDER BY seed NULLS FIRST, run) AS b_extracted
    FROM evals WHERE arm = $b OR run = $b GROUP BY benchmark, question_id
),
disagreeing AS (
    SELECT *, md5(concat('evidence:', question_id)) AS draw,
           count(*) OVER (PARTITION BY benchmark) AS disagreeing
    FROM a JOIN b USING (benchmark, question_id)
    WHERE a_right * b_runs <> b_right * a_runs
)
SELECT benchmark, question_id, gold, a_right, a_runs, a_seeds, a_extracted,
       b_right, b_runs, b_seeds, b_extracted, disagreeing
FROM disagreeing
QUALIFY row_number() OVER (PARTITION BY benchmark ORDER BY draw, question_id) <= 5
ORDER BY benchmark, draw, question_id;
