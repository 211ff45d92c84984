-- The teacher's conclusions against the reference grading of each candidate answer: how
-- many critiques say right or wrong, how often the teacher agrees with the grader, and
-- how many became CFT examples.
SELECT c.status,
       coalesce(c.conclusion, '(none)') AS conclusion,
       coalesce(c.verdict, '(no reference)') AS verdict,
       count(*) AS critiques,
       count(x.id) AS cft_examples
FROM critiques c
LEFT JOIN cft x USING (id)
GROUP BY ALL
ORDER BY ALL;
