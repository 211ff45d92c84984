-- Rows in the pool by source, with how many carry a reference answer.
SELECT
    source,
    count(*) AS rows,
    count(reference) AS with_reference,
    round(avg(len(messages)), 2) AS avg_turns
FROM pool
GROUP BY source
ORDER BY rows DESC, source;
