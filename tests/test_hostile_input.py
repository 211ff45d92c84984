"""Hostile input, fuzz-style: files a careless tool or a hostile user could hand to ingest.

Seeded random rows of every kind (valid, duplicate, malformed, NUL bytes, Latin-1 bytes,
numbers where strings belong, empty turns, deep nesting, not objects, blank lines) go into
JSON Lines with a BOM and CRLF line ends, JSON arrays with a BOM, truncated .gz/.bz2/.zst
archives (cut inside the first block and deep inside a large one), a multi-member gzip, a
UTF-16 file, empty files and one 50 MB row. The generator knows what each row is, so the
test knows exactly which rows must be kept, which are duplicates and why each other one is
rejected: read = kept + duplicates + rejected, to the row, with every valid row kept. The
plan, map and reduce steps run as the stage runs them (without Ray here; through Ray in the
last test).
"""

from __future__ import annotations

import bz2
import gzip
import json
import random
import zlib
from collections import Counter
from dataclasses import dataclass, field

import pyarrow.parquet as pq
import pytest
import zstandard

from pipelines import config as config_module
from pipelines.ingest import dedupe, units
from pipelines.ingest.plan import make_plan
from pipelines.ingest.settings import MAX_LINE_BYTES, IngestConfig
from pipelines.ingest.stage import run as run_ingest
from tests.conftest import write_config

BOM = b"\xef\xbb\xbf"
BAD_KINDS = ("malformed", "nul", "latin1", "number", "empty_turn", "deep", "list")
JSONL_KINDS = ("valid",) * 8 + ("dup", "deep_ok", "blank", *BAD_KINDS)
ARRAY_KINDS = ("valid",) * 8 + ("dup", "number", "empty_turn", "deep", "deep_ok", "list")
REASONS = {
    "malformed": "malformed JSON",
    "nul": "malformed JSON",
    "latin1": "undecodable bytes",
    "number": "wrong-typed field",
    "empty_turn": "empty turn",
    "deep": "too deeply nested",
    "list": "not an object",
}


def _chat(question: str, answer: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}], **extra}


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@dataclass
class Expected:
    """What ingest must make of the files: kept questions, duplicates, reject reasons."""

    kept: set[str] = field(default_factory=set)
    duplicates: int = 0
    rejects: Counter = field(default_factory=Counter)

    @property
    def read(self) -> int:
        return len(self.kept) + self.duplicates + sum(self.rejects.values())


class Rows:
    """Seeded rows of every kind: each as bytes of a JSON Lines line, with what it is."""

    def __init__(self, seed: int, prefix: str):
        self.random, self.prefix, self.count, self.valid = random.Random(seed), prefix, 0, []

    def question(self) -> str:
        self.count += 1
        flourish = self.random.choice(["", " café", " 東京", " emoji \U0001f600", " tab\tinside", " nul \x00 escaped"])
        return f"{self.prefix} question {self.count}{flourish}"

    def line(self, kind: str) -> tuple[bytes, str, str | None]:
        """(line bytes, kind, the question when the row must be kept)."""
        if kind == "dup" and not self.valid:
            kind = "valid"
        if kind in ("valid", "deep_ok"):
            question = self.question()
            extra = {"trace": json.loads(_nested(50))} if kind == "deep_ok" else {}
            self.valid.append(question)
            text = json.dumps(_chat(question, f"answer\r\nwith CRLF {self.count}", **extra), ensure_ascii=False)
            return text.encode(), "valid", question
        if kind == "dup":  # the same conversation, spaced and line-ended differently
            question = self.random.choice(self.valid)
            number = question.split(" question ")[1].split(" ")[0]
            return json.dumps(_chat(f"  {question}\r\n", f"answer\nwith CRLF {number} ")).encode(), "dup", question
        question = self.question()
        if kind == "malformed":
            return json.dumps(_chat(question, "a"))[:25].encode(), kind, None
        if kind == "nul":
            return json.dumps(_chat(question, "a")).replace("a", "a\x00", 1).encode(), kind, None
        if kind == "latin1":
            text = json.dumps(_chat(f"{self.prefix} latin-1 {self.count} café", "a"), ensure_ascii=False)
            return text.encode("latin-1"), kind, None
        if kind == "number":
            return json.dumps(_chat(question, "a")).replace('"a"', "5").encode(), kind, None
        if kind == "empty_turn":
            return json.dumps(_chat(question, " \r\n ")).encode(), kind, None
        if kind == "deep":
            return f'{{"messages": [], "trace": {_nested(100_000)}}}'.encode(), kind, None
        if kind == "list":
            return b"[1, 2, 3]", kind, None
        return b"   ", "blank", None

    def forget(self, lines: list[tuple[bytes, str, str | None]]) -> None:
        """Rows that will not be read: later duplicates must not point at them."""
        gone = {question for _, kind, question in lines if kind == "valid"}
        self.valid = [question for question in self.valid if question not in gone]

    def lines(self, count: int, kinds=JSONL_KINDS) -> list[tuple[bytes, str, str | None]]:
        return [self.line(self.random.choice(kinds)) for _ in range(count)]


def _count(expected: Expected, rows: list[tuple[bytes, str, str | None]]) -> None:
    for _, kind, question in rows:
        if kind == "valid":
            expected.kept.add(question)
        elif kind == "dup":
            expected.duplicates += 1
        elif kind != "blank":
            expected.rejects[REASONS[kind]] += 1


def _jsonl(rows, crlf: bool = False) -> bytes:
    return (b"\r\n" if crlf else b"\n").join(line for line, _, _ in rows) + b"\n"


def _array_item(line: bytes, kind: str) -> str:
    if kind == "deep":  # past the array reader's 512 levels, within what a JSON file may hold
        return '{"messages": [], "trace": ' + _nested(600) + "}"
    return line.decode()


def _complete_lines(decompressed: bytes) -> int:
    """Lines wholly inside what survived the cut (the last piece is the row it cut)."""
    return decompressed.count(b"\n")


COMPRESSORS = {
    ".gz": (gzip.compress, lambda data: zlib.decompressobj(wbits=31).decompress(data)),
    ".bz2": (lambda data: bz2.compress(data, 1), lambda data: bz2.BZ2Decompressor().decompress(data)),  # 100 kB blocks
    ".zst": (
        zstandard.ZstdCompressor().compress,
        lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data),
    ),
}


def write_hostile_files(root, seed: int, big_row: bool = False) -> Expected:
    """The files under `root`, and exactly what ingest must make of them."""
    rows, expected = Rows(seed, f"s{seed}"), Expected()
    bom_lines = rows.lines(60)
    (root / "bom_crlf.jsonl").write_bytes(BOM + _jsonl(bom_lines, crlf=True))
    _count(expected, bom_lines)

    items = rows.lines(40, ARRAY_KINDS)
    array = "[\n" + ",\n".join(_array_item(line, kind) for line, kind, _ in items) + "\n]"
    (root / "bom_array.json").write_bytes(BOM + array.encode())
    _count(expected, items)

    for suffix, (compress, decompress_prefix) in COMPRESSORS.items():
        for size, cut_at in (("small", 0.5), ("large", 0.6)):
            lines = rows.lines(12 if size == "small" else 2_000)
            packed = compress(_jsonl(lines))
            cut = packed[: int(len(packed) * cut_at)]
            (root / f"cut_{size}.jsonl{suffix}").write_bytes(cut)
            survived = _complete_lines(decompress_prefix(cut))
            _count(expected, lines[:survived])
            rows.forget(lines[survived:])  # never read: no later row can duplicate them
            expected.rejects["truncated compressed stream"] += 1

    members = [rows.lines(20), rows.lines(20)]
    (root / "members.jsonl.gz").write_bytes(b"".join(gzip.compress(_jsonl(m)) for m in members))
    for member in members:
        _count(expected, member)

    utf16 = rows.lines(5, ("valid",))
    (root / "utf16.jsonl").write_bytes(_jsonl(utf16).decode().encode("utf-16"))
    rows.forget(utf16)
    expected.rejects["undecodable bytes"] += 1
    for name, data in (("empty.jsonl", b""), ("blank.jsonl", b"\n \r\n\n"), ("empty.json.gz", gzip.compress(b""))):
        (root / name).write_bytes(data)
        expected.rejects["empty file"] += 1
    (root / "bom_only.json").write_bytes(BOM)
    expected.rejects["empty file"] += 1

    if big_row:
        question = rows.question()
        (root / "big.jsonl").write_text(json.dumps(_chat(question, "x" * 50_000_000)) + "\n")
        expected.kept.add(question)
    return expected


def _ingest_without_ray(root, work_dir, max_chars: int) -> tuple[list[dict], list[dict]]:
    """The stage's plan, map and reduce steps, in this process."""
    sources = [{"kind": "files", "name": "hostile", "paths": [str(root)]}]
    config = IngestConfig(sources=sources, max_text_chars=max_chars, max_line_bytes=max(max_chars, MAX_LINE_BYTES))
    plan = make_plan(config)
    unit_stats = [
        units.process(unit, str(work_dir), plan.buckets, max_chars, config.max_line_bytes) for unit in plan.units
    ]
    bucket_stats = [dedupe.process(bucket, str(work_dir)) for bucket in range(plan.buckets)]
    return unit_stats, bucket_stats


def _kept_questions(pool_dir) -> list[str]:
    return [row["messages"][0]["content"] for row in pq.read_table(pool_dir).to_pylist()]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_valid_row_is_kept_and_every_other_row_accounted_for(tmp_path, seed):
    root = tmp_path / "inputs"
    root.mkdir()
    expected = write_hostile_files(root, seed, big_row=seed == 1)
    unit_stats, bucket_stats = _ingest_without_ray(root, tmp_path / "work", max_chars=60_000_000)

    read = sum(s["rows_read"] for s in unit_stats)
    rejected = sum(s["rows_rejected"] for s in unit_stats)
    kept = sum(s["rows_out"] for s in bucket_stats)
    duplicates = sum(s["rows_in"] for s in bucket_stats) - kept
    assert read == kept + duplicates + rejected
    assert (read, kept, duplicates, rejected) == (
        expected.read,
        len(expected.kept),
        expected.duplicates,
        sum(expected.rejects.values()),
    )
    rejects = pq.read_table(tmp_path / "work" / "rejects").to_pylist()
    assert Counter(r["reason"] for r in rejects) == expected.rejects
    questions = _kept_questions(tmp_path / "work" / "pool")
    assert len(questions) == len(set(questions)) and set(questions) == {q.strip() for q in expected.kept}


def test_each_damaged_file_is_one_reject_that_says_where_it_broke(tmp_path):
    root = tmp_path / "inputs"
    root.mkdir()
    write_hostile_files(root, seed=4)
    unit_stats, _ = _ingest_without_ray(root, tmp_path / "work", max_chars=100_000)
    problems = sorted(problem for stats in unit_stats for problem in stats["file_problems"])
    named = {problem.split(": ", 1)[0].rsplit("/", 1)[1]: problem.split(": ", 1)[1] for problem in problems}
    assert named["empty.jsonl"] == named["blank.jsonl"] == named["empty.json.gz"] == "the file holds no rows"
    assert named["utf16.jsonl"].startswith("the file is UTF-16")
    for suffix in COMPRESSORS:
        assert named[f"cut_large.jsonl{suffix}"].startswith("truncated compressed stream after row ")
    rejects = {r["file"].rsplit("/", 1)[1]: r for r in pq.read_table(tmp_path / "work" / "rejects").to_pylist()}
    cut = rejects["cut_large.jsonl.gz"]
    after = int(cut["detail"].split("after row ")[1].split(":")[0])
    assert cut["row"] == after + 1 and cut["reason"] == "truncated compressed stream"
    assert rejects["empty.jsonl"]["row"] == 0


def test_a_bom_json_array_is_detected_and_read_whole(tmp_path):
    records = [_chat(f"q{i}", f"a{i}") for i in range(10)]
    (tmp_path / "bom.json").write_bytes(BOM + json.dumps(records).encode())
    config = IngestConfig(sources=[{"kind": "files", "name": "bom", "paths": [str(tmp_path / "bom.json")]}])
    plan = make_plan(config)
    assert [unit.format for unit in plan.units] == ["openai"]
    stats = units.process(plan.units[0], str(tmp_path / "work"), plan.buckets, 1_000)
    assert (stats["rows_read"], stats["rows_staged"], stats["rows_rejected"]) == (10, 10, 0)


@pytest.mark.ray
def test_the_stage_on_ray_accounts_for_every_row_and_goes_on_past_empty_files(ray_local, tmp_path):
    root = tmp_path / "inputs"
    root.mkdir()
    expected = write_hostile_files(root, seed=5)
    (root / "more").mkdir()
    (root / "more" / "fine.jsonl").write_text(json.dumps(_chat("after the empty files", "still read")) + "\n")
    expected.kept.add("after the empty files")
    source = {"kind": "files", "name": "hostile", "paths": [str(root / "**")]}
    manifest = run_ingest(config_module.load(write_config(tmp_path / "c.yaml", tmp_path / "run", [source])))
    assert manifest["rows_in"] == manifest["rows_out"] + manifest["duplicates"] + manifest["rows_rejected"]
    assert (manifest["rows_in"], manifest["rows_out"], manifest["duplicates"]) == (
        expected.read,
        len(expected.kept),
        expected.duplicates,
    )
    assert manifest["rejects_by_reason"] == dict(expected.rejects)
    assert set(_kept_questions(tmp_path / "run" / "pool")) == {q.strip() for q in expected.kept}


def test_concatenated_archives_are_read_whole_and_a_cut_lz4_keeps_earlier_reads(tmp_path):
    import pyarrow as pa

    from pipelines.ingest import readers

    lines = b"".join(json.dumps({"q": i}).encode() + b"\n" for i in range(20_000))
    halves = (lines[: len(lines) // 2], lines[len(lines) // 2 :])  # cut mid-line: the frames join it again
    (tmp_path / "frames.jsonl.zst").write_bytes(b"".join(zstandard.ZstdCompressor().compress(h) for h in halves))
    (tmp_path / "streams.jsonl.bz2").write_bytes(b"".join(bz2.compress(h) for h in halves))
    for name in ("frames.jsonl.zst", "streams.jsonl.bz2"):
        assert [r.data["q"] for r in readers.read(str(tmp_path / name), "jsonl")] == list(range(20_000)), name

    packed = pa.BufferOutputStream()
    with pa.CompressedOutputStream(packed, "lz4") as stream:
        stream.write(lines * 5)
    data = packed.getvalue().to_pybytes()
    (tmp_path / "cut.jsonl.lz4").write_bytes(data[: len(data) // 2])
    records = list(readers.read(str(tmp_path / "cut.jsonl.lz4"), "jsonl"))
    last = records[-1]
    assert all(r.data is not None for r in records[:-1]) and len(records) > 1
    assert last.error.reason == "truncated compressed stream" and last.whole_file
    assert last.error.detail.startswith(f"truncated compressed stream after row {len(records) - 1}:")


def test_a_file_that_opens_with_a_line_too_long_is_fitted_to_its_first_object(tmp_path):
    path = tmp_path / "long_first.jsonl.gz"
    rows = [json.dumps(_chat(f"q{i}", f"a{i}")) for i in range(3)]
    long_line = b'{"text": "' + b"z" * MAX_LINE_BYTES + b'"}\n'  # no format fits it, had it been read
    path.write_bytes(gzip.compress(long_line + "\n".join(rows).encode(), 1))
    config = IngestConfig(sources=[{"kind": "files", "name": "long", "paths": [str(path)]}])
    plan = make_plan(config)
    assert [unit.format for unit in plan.units] == [""]  # the plan's sample stopped at the long line
    stats = units.process(plan.units[0], str(tmp_path / "work"), plan.buckets, 1_000, config.max_line_bytes)
    assert (stats["rows_read"], stats["rows_staged"], stats["rejects_by_reason"]) == (4, 3, {"row too long": 1})
