-- Near-duplicates (scores/near_dup), by source: rows, rows in a cluster of two or more, rows
-- not kept (selections skip them unless `dedupe: off`), and the largest cluster a row is in.
SELECT
    p.source,
    count(*) AS rows,
    count(*) FILTER (WHERE d.cluster_size > 1) AS in_clusters,
    count(*) FILTER (WHERE NOT d.keep) AS not_kept,
    max(d.cluster_size) AS largest_cluster
FROM scores_near_dup AS d
JOIN pool AS p USING (id)
GROUP BY p.source
ORDER BY not_kept DESC, p.source;
