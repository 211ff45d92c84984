-- A few contaminated pool rows per benchmark, strongest overlap first: the row's first user
-- turn (cut at 300 characters) beside the benchmark question id it contains.
-- The rows are chosen before the pool's text is joined, so the join looks up a handful of
-- ids (row groups skipped by the pool's Bloom filters) instead of reading every row's text.
WITH chosen AS (
    SELECT benchmark, question_id, match, matched_ngrams, overlap, id
    FROM scores_contamination
    WHERE contaminated AND id IN (SELECT id FROM pool)
    QUALIFY row_number() OVER (PARTITION BY benchmark ORDER BY overlap DESC, id) <= 3
)
SELECT c.benchmark, c.question_id, c.match, c.matched_ngrams, round(c.overlap, 3) AS overlap, c.id, p.source,
       left(p.messages[1].content, 300) AS text
FROM chosen AS c
JOIN pool AS p USING (id)
ORDER BY benchmark, overlap DESC, id;
