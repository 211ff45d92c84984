-- A few contaminated pool rows per benchmark, strongest overlap first: the row's first user
-- turn (cut at 300 characters) beside the benchmark question id it contains.
SELECT benchmark, question_id, match, matched_ngrams, round(overlap, 3) AS overlap, id, source, text
FROM (
    SELECT c.benchmark, c.question_id, c.match, c.matched_ngrams, c.overlap, c.id, p.source,
           left(p.messages[1].content, 300) AS text,
           row_number() OVER (PARTITION BY c.benchmark ORDER BY c.overlap DESC, c.id) AS n
    FROM scores_contamination AS c
    JOIN pool AS p USING (id)
    WHERE c.contaminated
)
WHERE n <= 3
ORDER BY benchmark, overlap DESC, id;
