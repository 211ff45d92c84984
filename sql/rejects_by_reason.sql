-- Rejected rows by stage, source and reason, with one example of each.
SELECT
    stage,
    source,
    reason,
    count(*) AS rows,
    min(file || ':' || row || coalesce(' ' || field, '')) AS example
FROM rejects
GROUP BY stage, source, reason
ORDER BY rows DESC, stage, source, reason;
