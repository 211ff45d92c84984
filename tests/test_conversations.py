"""The `conversations` source: seeded conversations recombined from the shared pools' real text."""

from __future__ import annotations

import dataclasses
import gzip
import json
import statistics
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from pipelines import config as config_module
from pipelines.ingest import conversations, normalize
from pipelines.ingest.plan import InputError, make_plan
from pipelines.ingest.settings import IngestConfig
from pipelines.ingest.stage import run
from tests.conftest import REPO, write_config

POOLS = ("alpaca_en_demo.json", "gsm8k_train.jsonl", "math_level3to5_train.parquet")
SCRIPT = """
import json, sys
from pipelines.ingest import conversations, normalize
from pipelines.ingest.plan import Unit
unit = Unit.from_json(sys.argv[1])
rows = conversations.generate(unit.start, unit.stop, *conversations.prepared(json.loads(unit.generator)))
print(json.dumps([normalize.example_id(row.turns) for row in rows]))
"""


def _source(corpus: list[str], **settings) -> dict:
    return {"kind": "conversations", "rows": 1_000_000, "corpus": corpus, **settings}


def _units(source: dict, rows_per_unit: int = 10_000):
    return make_plan(IngestConfig(sources=[source], rows_per_unit=rows_per_unit)).units


def _rows(unit, start: int, stop: int, **changes) -> list[conversations.Conversation]:
    return list(conversations.generate(start, stop, *conversations.prepared({**json.loads(unit.generator), **changes})))


@pytest.fixture(scope="module")
def unit(shared_data):
    return _units(_source([str(shared_data / "pools" / name) for name in POOLS]), rows_per_unit=200)[0]


def test_rows_depend_only_on_seed_and_index(unit):
    block = _rows(unit, 300, 420)
    again = _rows(unit, 350, 360)
    assert [row.index for row in block] == list(range(300, 420))
    assert block[50:60] == again
    other_seed = _rows(unit, 300, 420, seed=1)
    assert not {normalize.example_id(r.turns) for r in other_seed} & {normalize.example_id(r.turns) for r in block}


def test_a_fresh_process_with_other_hash_seeds_makes_the_same_rows(unit):
    def ids(hash_seed: str) -> list[str]:
        command = [sys.executable, "-c", SCRIPT, unit.to_json()]
        env = {"PYTHONHASHSEED": hash_seed, "PATH": ""}
        return json.loads(subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout)

    assert ids("1") == ids("2") == [normalize.example_id(row.turns) for row in _rows(unit, unit.start, unit.stop)]


def test_a_realistic_length_mix_of_distinct_rows_with_near_duplicates(unit):
    rows = _rows(unit, 0, 3000)
    corpus, recipe = conversations.prepared(json.loads(unit.generator))
    sizes = [sum(len(content.encode()) for _, content in row.turns) for row in rows]
    median = statistics.median(sizes)
    assert median >= 500 and statistics.quantiles(sizes, n=10)[-1] > 2 * median  # a long tail
    assert len({normalize.example_id(row.turns) for row in rows}) == len(rows)
    for row in rows:
        assert normalize.conversation(row.turns, "messages") == row.turns
    assert 0.15 < sum(len(row.turns) > 2 for row in rows) / len(rows) < 0.25
    variants = [row for row in rows if row.variant_of is not None]
    assert 0.03 < len(variants) / len(rows) < 0.07
    for variant in variants:  # a few words from the row before it, itself no variant
        original = rows[variant.variant_of]
        assert variant.variant_of == variant.index - 1 and original.variant_of is None
        assert original == conversations.original(variant.variant_of, corpus, recipe)
        edited, before = variant.turns[-1][1].split(), original.turns[-1][1].split()
        assert variant.turns[:-1] == original.turns[:-1] and edited != before
        assert abs(len(edited) - len(before)) <= 3 and len(set(edited) ^ set(before)) <= 6


def test_the_plan_fingerprints_the_corpus_and_refuses_one_too_big(shared_data, tmp_path):
    corpus = tmp_path / "gsm8k.jsonl"
    lines = (shared_data / "pools" / "gsm8k_train.jsonl").read_text(encoding="utf-8").splitlines()
    corpus.write_text("\n".join(lines[:300]) + "\n", encoding="utf-8")
    source = _source([str(corpus)], rows=50)
    first = make_plan(IngestConfig(sources=[source]))
    (stale,) = json.loads(first.units[0].generator)["corpus_files"]
    assert first.inputs[0][2] == f"sha256:{stale['sha256']}" and stale["format"] == "gsm8k"
    corpus.write_text("\n".join(lines[1:301]) + "\n", encoding="utf-8")  # same size, other rows
    assert make_plan(IngestConfig(sources=[source])).inputs != first.inputs  # ingest's identity moves
    with pytest.raises(ValueError, match="changed since the plan"):
        conversations.load((conversations.CorpusFile(**stale),), (), 10**9)
    with pytest.raises(InputError, match="max_corpus_bytes"):
        make_plan(IngestConfig(sources=[_source([str(corpus)], rows=50, max_corpus_bytes=1000)]))


def test_a_worker_refuses_a_compressed_corpus_whose_text_passes_max_corpus_bytes(shared_data, tmp_path):
    corpus = tmp_path / "gsm8k.jsonl.gz"
    lines = (shared_data / "pools" / "gsm8k_train.jsonl").read_text(encoding="utf-8").splitlines()[:300]
    corpus.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    text = sum(len(record["question"]) + len(record["answer"]) for record in map(json.loads, lines))
    limit = (corpus.stat().st_size + text) // 2  # the file fits, its text does not
    assert corpus.stat().st_size < limit < text
    (unit,) = _units(_source([str(corpus)], rows=50, max_corpus_bytes=limit))  # the plan sees the file's size
    with pytest.raises(ValueError, match="passes max_corpus_bytes"):
        conversations.prepared(json.loads(unit.generator))
    assert conversations.prepared({**json.loads(unit.generator), "max_corpus_bytes": text})[0].records == 300


def test_records_matching_an_excluded_benchmark_question_are_no_material(shared_data, tmp_path):
    lines = (shared_data / "pools" / "gsm8k_train.jsonl").read_text(encoding="utf-8").splitlines()[:200]
    corpus, benchmark = tmp_path / "pool.jsonl", tmp_path / "test.jsonl"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    copied = [json.loads(line) for line in lines[10:13]]  # three train questions posing as a test set
    benchmark.write_text("".join(json.dumps(record) + "\n" for record in copied), encoding="utf-8")
    (unit,) = _units(_source([str(corpus)], rows=100, exclude=[str(benchmark)]))
    (kept,) = conversations.prepared(json.loads(unit.generator))[0].families
    prompts = {"".join(prompt).strip() for prompt in kept.prompts}
    assert len(prompts) == 197 and not prompts & {record["question"] for record in copied}
    (before,) = _units(_source([str(corpus)], rows=100))
    assert len(conversations.prepared(json.loads(before.generator))[0].families[0].prompts) == 200


def test_the_pool_1m_config_makes_a_million_rows_and_six_10k_selections():
    loaded = config_module.load(REPO / "configs" / "pool_1m.yaml")
    (source,) = loaded.ingest.sources
    assert source.kind == "conversations" and source.rows == 1_000_000
    assert loaded.score.model_loss.sample_fraction * source.rows >= 5_000
    assert all(getattr(loaded.score, name) for name in ("compression", "embedding", "clusters", "near_dup"))
    big = {name: spec for name, spec in loaded.select.items() if spec.budget == 10_000}
    assert sorted(big) == ["kcenter", "km_random", "low_compression", "random", "top_ifd", "zip"]
    assert big["km_random"].allocation == "clusters_equal" and big["zip"].mode == "fast"
    named = [*source.corpus, *source.exclude]
    assert all((REPO / path).is_file() for path in named) or not (REPO.parent / "shared").is_dir()


@pytest.mark.ray
def test_ingest_stages_every_generated_row(ray_local, shared_data, tmp_path):
    corpus = [str(shared_data / "pools" / name) for name in POOLS]
    path = write_config(tmp_path / "c.yaml", tmp_path / "run", [_source(corpus, rows=1200)], rows_per_unit=600)
    manifest = run(config_module.load(path))
    assert (manifest["rows_in"], manifest["rows_out"], manifest["duplicates"]) == (1200, 1200, 0)
    pool = pq.read_table(tmp_path / "run" / "pool")
    unit = _units(_source(corpus, rows=1200), 600)[0]
    assert set(pool["id"].to_pylist()) == {normalize.example_id(row.turns) for row in _rows(unit, 0, 1200)}
    meta = [json.loads(text) for text in pool["meta"].to_pylist()]
    assert sorted(m["index"] for m in meta) == list(range(1200))
    assert {m["generator"] for m in meta} == {"conversations"}


def test_a_generated_row_past_max_text_chars_is_a_reject_with_its_turns(unit, tmp_path):
    from pipelines.ingest import units

    short = dataclasses.replace(unit, start=0, stop=40)
    sizes = [sum(len(content) for _, content in row.turns) for row in _rows(short, 0, 40)]
    limit = int(statistics.median(sizes))
    stats = units.process(short, str(tmp_path), 1, limit)
    too_long = sum(size > limit for size in sizes)
    assert (stats["rows_staged"], stats["rejects_by_reason"]) == (40 - too_long, {"text too long": too_long})
    (rejects,) = (tmp_path / "rejects").glob("*.parquet")
    raw = pq.read_table(rejects)["raw"].to_pylist()
    assert len(raw) == too_long and all(text.startswith('[["user", ') for text in raw)
