-- Score distributions of each selection next to the whole pool: rows, then mean and median
-- of the compression ratio, IFD, loss given the prompt and response length in tokens.
-- Needs the compression and model_loss score tables.
WITH members AS (
    SELECT selection, id FROM selections
    UNION ALL
    SELECT '(pool)' AS selection, id FROM pool
)
SELECT m.selection,
       count(*) AS rows,
       round(avg(c.compression_ratio), 3) AS compression_ratio_mean,
       round(median(c.compression_ratio), 3) AS compression_ratio_median,
       round(avg(l.ifd), 3) AS ifd_mean,
       round(median(l.ifd), 3) AS ifd_median,
       round(avg(l.loss_given_prompt), 3) AS loss_given_prompt_mean,
       round(avg(l.n_response_tokens), 1) AS response_tokens_mean
FROM members m
LEFT JOIN scores_compression c USING (id)
LEFT JOIN scores_model_loss l USING (id)
GROUP BY m.selection
ORDER BY m.selection <> '(pool)', m.selection;
