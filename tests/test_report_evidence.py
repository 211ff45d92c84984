"""The report's evidence (issue 25) on the hand-made run of tests/report_runs.py, with a
pool, an eval table and critiques holding hostile text: the named queries' rows worked out
by hand (md5 orders recomputed here), and the HTML section built from exactly those rows,
every value escaped."""

from __future__ import annotations

import hashlib
import html
import json
import subprocess
from html.parser import HTMLParser

import pytest

import schemas
from pipelines import views
from pipelines.report import evidence
from tests.conftest import BIN, REPO, cli_env
from tests.report_runs import QUESTIONS, table
from tests.report_runs import make_run as make_report_run

HOSTILE = "<script>alert(1)</script></details></table>"
LONG = "x" * 400


def draw(salt: str, key: str) -> str:
    return hashlib.md5(f"{salt}{key}".encode()).hexdigest()


def make_run(folder, critiques: bool = True) -> None:
    """The report run, with hostile and long texts in the pool and in one eval table, and
    (with `critiques`) candidates and critiques covering every conclusion/verdict pair."""
    make_report_run(folder)
    ids = [f"r{i:03d}" for i in range(200)]
    messages = [
        [{"role": "user", "content": f"{HOSTILE} question {i}"}, {"role": "assistant", "content": LONG}]
        for i in range(200)
    ]
    pool = {"id": ids, "source": ["s"] * 200, "messages": messages, "reference": [None] * 200, "meta": [None] * 200}
    table(folder, "pool", pool, schemas.SCHEMAS["pool"], {"wall_seconds": 5.0})
    graded = [index < 5 for index in range(QUESTIONS)]  # cft's answers, as tests/report_runs.py has them
    prompts = [json.dumps([{"role": "system", "content": "s"}, {"role": "user", "content": f"{HOSTILE} Q{i}"}])
               for i in range(QUESTIONS)]  # fmt: skip
    rows = {"question_id": [f"q{i:02d}" for i in range(QUESTIONS)], "prompt": prompts, "output": ["o"] * QUESTIONS,
            "extracted": [HOSTILE if i == 5 else "1" for i in range(QUESTIONS)],
            "gold": ["1" if ok else "2" for ok in graded], "correct": graded, "rule": ["exact"] * QUESTIONS,
            "status": ["ok"] * QUESTIONS, "error": [None] * QUESTIONS, "finish_reason": ["stop"] * QUESTIONS,
            "output_tokens": [10] * QUESTIONS}  # fmt: skip
    table(folder, "eval/cft/gsm8k", rows, schemas.SCHEMAS["eval"])
    if critiques:
        _critiques(folder, ids)


PAIRS = [("right", "right"), ("right", "wrong"), ("wrong", "right"), ("wrong", "wrong"), (None, "right")]


def _critiques(folder, ids: list[str]) -> None:
    """20 critiques of candidates to pool rows r000-r019: 4 of each (conclusion, verdict)
    pair in PAIRS, and one more that failed (never listed)."""
    count = 4 * len(PAIRS)
    candidate_ids = [f"k{i:02d}" for i in range(count + 1)]
    candidates = {"id": candidate_ids, "question_id": ids[: count + 1], "candidate_index": [0] * (count + 1),
                  "solution": [f"{HOSTILE}{LONG}"] * (count + 1), "model": ["m"] * (count + 1),
                  "sampling": ["{}"] * (count + 1)}  # fmt: skip
    table(folder, "candidates", candidates, schemas.SCHEMAS["candidates"], {"wall_seconds": 10.0})
    pairs = [PAIRS[i % len(PAIRS)] for i in range(count)] + [("right", "right")]
    critiques = {"id": candidate_ids, "critique": [f"{LONG} Conclusion: {HOSTILE}"] * count + [None],
                 "conclusion": [c for c, _ in pairs], "verdict": [v for _, v in pairs],
                 "agrees": [None if c is None else c == v for c, v in pairs], "teacher": ["t"] * (count + 1),
                 "status": ["ok"] * count + ["failed"], "error": [None] * count + ["boom"],
                 "attempts": [1] * (count + 1)}  # fmt: skip
    table(folder, "critiques", critiques, schemas.SCHEMAS["critiques"], {"wall_seconds": 20.0})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("run")
    make_run(folder)
    return str(folder)


def section(run_dir: str) -> str:
    return evidence.section(views.connect(run_dir), run_dir)


def named(run_dir: str, query: str, **parameters) -> list[dict]:
    return evidence.named_rows(views.connect(run_dir), query, **parameters)


def test_disagreements_list_five_per_benchmark_in_the_seeded_order(run_dir):
    rows = named(run_dir, "evidence_disagreements", a="sft_top", b="sft_random")
    # sft_top q0-15; sft_random seed 0 q0-3, seed 1 q0-5: they split on q04-q15 on gsm8k
    disagreeing = [f"q{i:02d}" for i in range(4, 16)]
    expected = sorted(disagreeing, key=lambda q: (draw("evidence:", q), q))[:5]
    on_gsm8k = [row for row in rows if row["benchmark"] == "gsm8k"]
    assert [row["question_id"] for row in on_gsm8k] == expected
    assert {row["disagreeing"] for row in on_gsm8k} == {12}
    first = on_gsm8k[0]
    assert (first["a_seeds"], first["b_seeds"], first["b_runs"]) == ([None], [0, 1], 2)
    assert first["b_right"] == (1 if first["question_id"] in ("q04", "q05") else 0)
    assert rows == named(run_dir, "evidence_disagreements", a="sft_top", b="sft_random")  # the same every time


def test_selection_rows_sit_beside_random_pool_rows_cut_with_an_ellipsis(run_dir):
    rows = named(run_dir, "evidence_selection_rows", selection="top_ifd")
    selected = [f"r{i:03d}" for i in range(25, 75)]  # tests/report_runs.py: top_ifd, ranks 1-50
    pool = [f"r{i:03d}" for i in range(200)]
    assert [r["id"] for r in rows if r["drawn_from"] == "selection"] == sorted(
        selected, key=lambda i: draw("evidence:selection:", i)
    )[:5]
    assert [r["id"] for r in rows if r["drawn_from"] == "pool"] == sorted(
        pool, key=lambda i: draw("evidence:pool:", i)
    )[:5]
    for row in rows:
        in_selection = row["id"] in selected
        assert row["rank"] == (selected.index(row["id"]) + 1 if in_selection else None)
        assert row["prompt"] == f"{HOSTILE} question {int(row['id'][1:])}"
        assert row["response"] == "x" * 299 + "…"


def test_critiques_spread_over_conclusion_and_verdict_disagreements_first(run_dir):
    rows = named(run_dir, "evidence_critiques")
    assert len(rows) == 6
    first_round = [(r["conclusion"], r["verdict"]) for r in rows[: len(PAIRS)]]
    assert first_round == [
        ("right", "wrong"),
        ("wrong", "right"),
        (None, "right"),
        ("right", "right"),
        ("wrong", "wrong"),
    ]
    assert "k20" not in {r["id"] for r in rows}  # the failed critique
    for row in rows:
        assert row["question"] == f"{HOSTILE} question {int(row['question_id'][1:])}"
        assert row["solution"].startswith(HOSTILE) and row["solution"].endswith("…") and len(row["solution"]) == 300
        assert row["critique_end"].startswith("…") and row["critique_end"].endswith(f"Conclusion: {HOSTILE}")
        assert len(row["critique_end"]) == 300


class Tags(HTMLParser):
    """Every start and end tag of a page, in order."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_endtag(self, tag):
        self.tags.append(f"/{tag}")


def test_the_section_shows_those_rows_escaped_and_collapsed(run_dir):
    page = section(run_dir)
    tags = Tags()
    tags.feed(page)
    assert "script" not in tags.tags  # hostile values stay text
    assert tags.tags.count("details") == tags.tags.count("/details") == 3 + 2 + 1  # 3 arms, 2 selections, CFT
    assert tags.tags.count("table") == tags.tags.count("/table")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;/details&gt;" in page
    assert "<script>" not in page and page.count("</details>") == 6
    for arm in ("base-tiny", "cft", "sft_top"):
        assert f"<summary>{arm} against sft_random: questions they disagree on" in page
    cft = named(run_dir, "evidence_disagreements", a="cft", b="sft_random")
    assert [r["question_id"] for r in cft if r["benchmark"] == "gsm8k"] == sorted(
        ["q04", "q05"], key=lambda q: draw("evidence:", q)
    )
    assert "Q5</td>" in page and "&lt;/table&gt; Q4" in page  # the question text, from cft's prompts
    assert "(s0)" in page and "1 of 2 right" in page
    assert f"<td>{html.escape(HOSTILE)}; 0 of 1 right</td>" in page  # cft's answer to q05
    for row in named(run_dir, "evidence_selection_rows", selection="random"):
        assert f"<td>{row['id']}</td>" in page
    for row in named(run_dir, "evidence_critiques"):
        assert f"<td>{html.escape(row['critique_end'])}</td>" in page


def test_a_run_without_critiques_has_no_cft_part_and_an_empty_run_no_section(tmp_path):
    make_run(tmp_path / "plain", critiques=False)
    page = section(str(tmp_path / "plain"))
    assert "What each selection picked" in page and "Critiques against the reference" not in page
    (tmp_path / "empty").mkdir()
    assert section(str(tmp_path / "empty")) == ""


def test_winnow_sql_lists_the_rows_the_section_shows(run_dir):
    """The named query through the real `winnow` command (a subprocess, as people run it)."""
    done = subprocess.run(
        [str(BIN / "winnow"), "sql", run_dir, "evidence_disagreements", "-p", "a=cft", "-p", "b=sft_random"],
        cwd=REPO,
        env=cli_env(COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    cft_block = next(block for block in section(run_dir).split("<details>") if "cft against" in block)
    rows = named(run_dir, "evidence_disagreements", a="cft", b="sft_random")
    assert cft_block.count("<tr>") == 1 + len(rows)  # the header, then exactly the query's rows
    for row in rows:
        assert f"<td>{row['benchmark']}</td><td>{row['question_id']}</td>" in cft_block
    listed = {line.split("│")[2].strip() for line in done.stdout.splitlines() if line.count("│") > 3}
    assert listed == {"q00", "q01", "q02", "q03", "q04", "q05"}
