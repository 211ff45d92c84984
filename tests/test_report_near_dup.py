"""The report's near-duplicate section and its named queries on a hand-made run: counts by
source, a few clusters with their kept row first, every pool text escaped."""

from __future__ import annotations

import schemas
from pipelines import views
from pipelines.report import cleaning
from tests.report_runs import table

HOSTILE = "<script>alert(1)</script>"


def _run(folder) -> None:
    ids = [f"r{i:02d}" for i in range(6)]
    messages = [
        [{"role": "user", "content": f"{HOSTILE} q{i}"}, {"role": "assistant", "content": "a"}] for i in range(6)
    ]
    pool = {"id": ids, "source": ["gsm8k"] * 3 + ["alpaca"] * 3, "messages": messages,
            "reference": [None] * 6, "meta": [None] * 6}  # fmt: skip
    table(folder, "pool", pool, schemas.SCHEMAS["pool"], {"wall_seconds": 1.0})
    # r00, r01, r03 are one cluster kept at r00; the others are alone
    near = {"id": ids, "cluster": ["r00", "r00", "r02", "r00", "r04", "r05"], "cluster_size": [3, 3, 1, 3, 1, 1],
            "keep": [True, False, True, False, True, True]}  # fmt: skip
    table(folder, "scores/near_dup", near, schemas.SCHEMAS["scores/near_dup"], {"wall_seconds": 1.0})


def test_the_section_counts_by_source_and_shows_the_cluster_escaped(tmp_path):
    _run(tmp_path)
    connection = views.connect(str(tmp_path))
    by_source = views.run_query(connection, "near_dup")[1]
    assert by_source == [("alpaca", 3, 1, 1, 3), ("gsm8k", 3, 2, 1, 3)]
    examples = views.run_query(connection, "near_dup_examples")[1]
    assert [(row[0], row[1], row[2]) for row in examples] == [
        ("r00", "r00", True),
        ("r00", "r01", False),
        ("r00", "r03", False),
    ]
    page = cleaning.section(str(tmp_path))
    assert '<section id="near-duplicates">' in page and "3 of 6 pool rows have a near-duplicate; 2 are not kept" in page
    assert "<script>" not in page and html_escaped(HOSTILE) in page
    assert '<section id="contamination">' not in page  # no contamination table: no section


def html_escaped(text: str) -> str:
    import html

    return html.escape(text)
