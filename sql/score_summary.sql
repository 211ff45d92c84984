-- One line per score table: rows scored and the spread of its main column.
SELECT 'compression' AS scorer, count(*) AS rows, 'compression_ratio' AS score,
       round(min(compression_ratio), 3) AS min, round(avg(compression_ratio), 3) AS mean,
       round(max(compression_ratio), 3) AS max, 0 AS nulls
FROM scores_compression
UNION ALL
SELECT 'model_loss', count(*), 'ifd', round(min(ifd), 3), round(avg(ifd), 3), round(max(ifd), 3),
       count(*) - count(ifd)
FROM scores_model_loss
UNION ALL
SELECT 'model_loss', count(*), 'loss_given_prompt', round(min(loss_given_prompt), 3),
       round(avg(loss_given_prompt), 3), round(max(loss_given_prompt), 3), count(*) - count(loss_given_prompt)
FROM scores_model_loss
UNION ALL
-- every vector of a table has its width (a fixed-size list): one row gives it, where reading
-- them all would decode every vector (~6 s for 1M x 384 on two CPUs)
SELECT 'embedding', (SELECT count(*) FROM scores_embedding), 'dimensions', width, width, width, 0
FROM (SELECT len(embedding) AS width FROM scores_embedding LIMIT 1)
UNION ALL
SELECT 'clusters', count(*), 'rows per cluster', min(n), round(avg(n), 1), max(n), 0
FROM (SELECT count(*) AS n FROM scores_clusters GROUP BY cluster);
