-- The report's evidence for CFT: 6 critiques the teacher finished (status ok), spread over
-- the pairs of its conclusion and the verdict of grading the candidate against the
-- reference: the first of each pair in a seeded md5 order of the id, pairs where the two
-- differ first, then the second of each, and so on. With the question (the pool row's
-- user turn) and the candidate's solution, each cut at 300 characters, and the critique's
-- last 300 characters, where its conclusion is.
WITH drawn AS (
    SELECT c.id, k.question_id, k.candidate_index, k.solution, c.critique, c.conclusion, c.verdict,
           md5(concat('evidence:', c.id)) AS draw,
           row_number() OVER (PARTITION BY c.conclusion, c.verdict ORDER BY draw, c.id) AS turn
    FROM critiques c JOIN candidates k USING (id)
    WHERE c.status = 'ok'
),
texts AS (
    SELECT d.*, [m.content FOR m IN p.messages IF m.role = 'user'][-1] AS question
    FROM drawn d LEFT JOIN pool p ON p.id = d.question_id
)
SELECT id, question_id, candidate_index,
       CASE WHEN length(question) > 300 THEN left(question, 299) || '…' ELSE question END AS question,
       CASE WHEN length(solution) > 300 THEN left(solution, 299) || '…' ELSE solution END AS solution,
       CASE WHEN length(critique) > 300 THEN '…' || right(critique, 299) ELSE critique END AS critique_end,
       conclusion, verdict
FROM texts
ORDER BY turn, conclusion IS NOT DISTINCT FROM verdict, conclusion NULLS LAST, verdict NULLS LAST, draw
LIMIT 6;
