-- The report's evidence for a selection: 5 rows of selection $selection next to 5 rows of
-- the whole pool, each five drawn in its own seeded md5 order of the id. `rank` is the
-- row's rank in the selection (null: not selected); `prompt` is the row's last user turn
-- and `response` its last assistant turn, each cut at 300 characters with an ellipsis.
WITH drawn AS (
    (SELECT 'selection' AS drawn_from, id, md5(concat('evidence:selection:', id)) AS draw
     FROM selections WHERE selection = $selection ORDER BY draw, id LIMIT 5)
    UNION ALL
    (SELECT 'pool' AS drawn_from, id, md5(concat('evidence:pool:', id)) AS draw
     FROM pool ORDER BY draw, id LIMIT 5)
),
texts AS (
    SELECT d.drawn_from, d.draw, d.id, s.rank, p.source,
           [m.content FOR m IN p.messages IF m.role = 'user'][-1] AS prompt,
           [m.content FOR m IN p.messages IF m.role = 'assistant'][-1] AS response
    FROM drawn d
    JOIN pool p USING (id)
    LEFT JOIN selections s ON s.id = d.id AND s.selection = $selection
)
SELECT drawn_from, id, rank, source,
       CASE WHEN length(prompt) > 300 THEN left(prompt, 299) || '…' ELSE prompt END AS prompt,
       CASE WHEN length(response) > 300 THEN left(response, 299) || '…' ELSE response END AS response
FROM texts
ORDER BY drawn_from DESC, draw, id;
