"""Contamination: the matching on hand-made cases, then one real Ray run of the scorer
(ingest -> score) with planted benchmark questions, its named query and report section."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml

import schemas
from pipelines import config as config_module
from pipelines import experiment, views
from pipelines.evaluate import benchmarks
from pipelines.report import cleaning
from pipelines.score import contamination, contamination_index

LONG = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)
SHORT = "What is 7 times 8?"
QUESTIONS = [("gsm8k", "long", LONG), ("gsm8k", "short", SHORT)] + [
    (
        "gsm8k",
        f"filler{i}",
        f"A farmer has {i} cows and {i + 1} goats on a farm near the river; how many animals in all?",
    )
    for i in range(20)
]


@pytest.fixture(scope="module")
def index():
    return contamination_index.build(QUESTIONS)


def test_normalise_drops_case_punctuation_and_width():
    assert contamination_index.normalise("  Ｗhat's 2+2?\n\tIt's 4!! ") == "what s 2 2 it s 4"


def test_short_questions_get_gpt3s_n_and_the_exact_match(index):
    assert index.n_by_benchmark == {"gsm8k": 13}  # 5th percentile of lengths, within [8, 13]
    assert contamination_index.benchmark_n([3, 4, 5], 13, 8) == 8
    assert index.ngram_counts[1] == 0 and 5 in index.exact  # "what is 7 times 8": exact only


def test_matches(index):
    texts = [
        LONG.upper().replace(",", " ;"),  # the whole question, case and punctuation changed
        "Answer this: " + LONG[:90] + " ... and tell me the clips sold in May.",  # part of it
        "Quick quiz. what is 7 times 8 ? It is 56.",  # the short question, inside other text
        "what is 7 times 80",  # not the short question: word boundaries hold
        "A clean row about clips, April and May, and friends.",
    ]
    found = contamination.match_texts(texts, index, contamination.Thresholds(1, 0.0))
    assert [m[0].match if m else None for m in found] == ["exact", "ngram", "exact", None, None]
    assert (found[0][0].question_id, found[0][0].overlap) == ("long", 1.0)
    partial = found[1][0]
    assert 0 < partial.overlap < 1 and partial.matched_ngrams == round(partial.overlap * index.ngram_counts[0])
    assert found[2][0].question_id == "short"
    strict = contamination.match_texts(texts, index, contamination.Thresholds(1, 0.9))
    assert not strict[1] and strict[0] and strict[2]  # below min_overlap: clean; exact: always flagged


def test_a_repeated_ngram_counts_once_and_rows_do_not_join(index):
    half = " ".join(LONG.split()[:14])
    found = contamination.match_texts([half + " " + half, half], index, contamination.Thresholds(1, 0.0))
    assert found[0][0].matched_ngrams == found[1][0].matched_ngrams == 2
    tail, head = " ".join(LONG.split()[:7]), " ".join(LONG.split()[7:14])
    assert contamination.match_texts([tail, head], index, contamination.Thresholds(1, 0.0)) == [[], []]


def test_table_schema(index):
    found = contamination.match_texts([LONG, "nothing"], index)
    table = contamination.to_table(["a", "b"], found)
    schemas.check("scores/contamination", table)
    clean = table.to_pylist()[1]
    assert clean == {
        "id": "b",
        "contaminated": False,
        "benchmark": None,
        "question_id": None,
        "matched_ngrams": 0,
        "overlap": 0.0,
        "match": None,
        "matches": [],
    }


# The Ray run: a GSM8K-format benchmark file and the generated held-out set, one exact copy
# of each and a clean row planted in a files source beside generated school math.
BENCH_ROWS = [{"question": LONG, "answer": "72 #### 72"}, {"question": SHORT, "answer": "#### 56"}]


def _rows(heldout_question: str) -> list[dict]:
    def chat(user, assistant):
        return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}

    return [
        chat("Solve: " + LONG.lower(), "72"),
        chat("Help me", f"Sure. {SHORT} It is 56."),
        chat(heldout_question, "ok"),
        chat("Name a colour.", "Blue."),
    ]


@pytest.fixture(scope="module")
def scored(ray_local, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("contamination")
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps(r) + "\n" for r in BENCH_ROWS))
    heldout = {"kind": "mathematics", "name": "held", "rows": 30, "seed": 3, "difficulty": "easy"}
    question = benchmarks.load_mathematics_heldout("held", 30, 3, ("arithmetic__add_or_sub",), "easy", 0.05)
    extra = tmp_path / "planted.jsonl"
    planted = _rows(question.table["question"][0].as_py())
    extra.write_text("".join(json.dumps(r) + "\n" for r in planted))
    document = {
        "name": "contamination-test",
        "run_dir": str(tmp_path / "run"),
        "ray": {"num_cpus": 2},
        "ingest": {
            "sources": [
                {"kind": "mathematics", "rows": 40, "seed": 5},
                {"kind": "files", "name": "planted", "paths": [str(extra)]},
            ]
        },
        "score": {
            "contamination": {
                "benchmarks": [
                    {"name": "gsm8k", "path": str(bench)},
                    {**heldout, "modules": ["arithmetic__add_or_sub"]},
                ]
            }
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    config = config_module.load(path)
    return config, experiment.run(config)


def test_the_scorer_on_ray(scored):
    config, manifests = scored
    pool = pq.read_table(f"{config.run_dir}/pool").to_pylist()
    rows = pq.read_table(f"{config.run_dir}/scores/contamination").to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in pool)
    assert manifests["scores/contamination"]["rows_out"] == len(pool)
    source = {r["id"]: r["source"] for r in pool}
    flagged = {(source[r["id"]], r["benchmark"], r["match"]) for r in rows if r["contaminated"]}
    assert ("planted", "gsm8k", "exact") in flagged and ("planted", "held", "exact") in flagged
    planted = [r for r in rows if source[r["id"]] == "planted"]
    assert sum(r["contaminated"] for r in planted) == 3  # the colour row is clean

    connection = views.connect(config.run_dir)
    columns, counts = views.run_query(connection, "contamination")
    by_key = {(row[0], row[1]): dict(zip(columns, row, strict=True)) for row in counts}
    assert by_key[("planted", "gsm8k")]["rows"] == 2 and by_key[("planted", "gsm8k")]["exact"] == 2
    _, examples = views.run_query(connection, "contamination_examples")
    assert len(examples) >= 3

    page = cleaning.section(config.run_dir)
    assert "<h2>Contamination</h2>" in page and "No arm has been trained yet." in page
    assert f"of {len(pool)} pool rows contain a benchmark question" in page
