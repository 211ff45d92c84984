-- A few near-duplicate clusters, largest first: each member's id, whether it is kept, and
-- the start of its last user turn (the clusters are drawn in a fixed order of their kept id).
WITH clusters AS (
    SELECT cluster, any_value(cluster_size) AS size FROM scores_near_dup
    WHERE cluster_size > 1 GROUP BY cluster
    ORDER BY size DESC, md5(cluster) LIMIT 3
)
SELECT d.cluster, d.id, d.keep,
       left(list_filter(p.messages, lambda m: m.role = 'user')[-1].content, 160) AS prompt
FROM scores_near_dup AS d
JOIN clusters USING (cluster)
JOIN pool AS p USING (id)
ORDER BY clusters.size DESC, d.cluster, d.keep DESC, d.id;
