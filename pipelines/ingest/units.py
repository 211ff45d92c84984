"""Map step of ingest: one unit (a file or a block of generated rows) -> staged Parquet.

A unit's good rows go to `staged/b-XXXXX/<unit>.parquet`, split by dedupe bucket (a hash
of the id), and its bad rows to `rejects/<unit>.parquet`. Files are written under a
temporary name and renamed; the unit's `done/<unit>.json` (its counts) is written last,
so a killed unit is simply redone and a finished one is never redone.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator

import pyarrow as pa

import schemas
from pipelines import runs, storage
from pipelines.ingest import adapters, conversations, mathematics, normalize, readers
from pipelines.ingest.plan import InputError, Unit
from pipelines.ingest.settings import MAX_LINE_BYTES

FLUSH_ROWS = 8_192
_META = json.JSONEncoder(sort_keys=True, default=str)  # built once: `json.dumps(**options)` rebuilds it a row


def bucket_of(example_id: str, buckets: int) -> int:
    return int(example_id[:8], 16) % buckets


class _RowBuffer:
    """Dict rows gathered into tables for one Parquet file."""

    def __init__(self, location: str, schema: pa.Schema):
        self.out, self.schema, self.rows = storage.ParquetAppender(location, schema), schema, []

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.out.write(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def close(self) -> None:
        self.flush()
        self.out.close()


def process(unit: Unit, work_dir: str, buckets: int, max_chars: int, max_line_bytes: int = MAX_LINE_BYTES) -> dict:
    """Read, adapt, normalise and stage one unit; returns (and records) its counts."""
    started = time.process_time()
    staged = [
        _RowBuffer(
            storage.join(work_dir, "staged", f"b-{b:05d}", f"{unit.key}.parquet"), schemas.SCHEMAS["staged_pool"]
        )
        for b in range(buckets)
    ]
    rejected = _RowBuffer(storage.join(work_dir, "rejects", f"{unit.key}.parquet"), schemas.SCHEMAS["rejects"])
    counts, reasons, file_problems = Counter(), Counter(), []
    for row in _pool_rows(unit, max_chars, max_line_bytes):
        counts["read"] += 1
        if "reason" in row:
            counts["rejected"] += 1
            reasons[row["reason"]] += 1
            if row.pop("whole_file", False):
                file_problems.append(f"{unit.location}: {row['detail']}")
            rejected.add(row)
            continue
        counts["staged"] += 1
        staged[bucket_of(row["id"], buckets)].add(row)
        if counts["staged"] % FLUSH_ROWS == 0:  # bound the rows held over all buckets, not per bucket
            for out in staged:
                out.flush()
    for out in [*staged, rejected]:
        out.close()
    stats = {
        "unit": unit.key,
        "source": unit.source,
        "rows_read": counts["read"],
        "rows_staged": counts["staged"],
        "rows_rejected": counts["rejected"],
        "rejects_by_reason": dict(reasons),
        "file_problems": file_problems,  # empty, cut short, broken midway: said on the console
        "cpu_seconds": round(time.process_time() - started, 3),
    }
    runs.mark_unit_done(work_dir, unit.key, stats)
    return stats


def _pool_rows(unit: Unit, max_chars: int, max_line_bytes: int) -> Iterator[dict]:
    if unit.kind == "mathematics":
        yield from _generated_rows(unit, max_chars)
        return
    if unit.kind == "conversations":
        yield from _conversation_rows(unit, max_chars)
        return
    try:
        records = readers.read(unit.location, unit.container, max_line_bytes)
        for record in itertools.islice(records, unit.max_rows or None):
            if not unit.format and record.data is not None:
                # the plan's sample stops at a row too long (and reads with the default limit):
                # the format is fitted to the first object here
                unit = dataclasses.replace(unit, format=adapters.detect(set(record.data), unit.location))
            yield _row_or_reject(unit, record, max_chars)
    except OSError as error:  # the file went away or became unreadable after the plan
        raise InputError(f"{unit.location}: cannot read: {error}") from error


def _row_or_reject(unit: Unit, record: readers.Record, max_chars: int) -> dict:
    """A pool row, or a reject row (`whole_file` marks one that stands for the rest of the file)."""
    if record.error is not None:
        return {**_reject(unit, record.row, record.error, record.raw()), "whole_file": record.whole_file}
    try:
        return _file_row(unit, record, max_chars)
    except normalize.RowError as error:
        return _reject(unit, record.row, error, record.raw())
    except RecursionError:  # nested past what json can encode into `meta`
        error = normalize.RowError("too deeply nested", None, readers.NESTING_DETAIL)
        return _reject(unit, record.row, error, (record.raw_text or "")[: readers.RAW_LIMIT])


def _file_row(unit: Unit, record: readers.Record, max_chars: int) -> dict:
    adapted = adapters.adapt(unit.format, record.data)
    turns = normalize.conversation(adapted.turns, "messages")
    normalize.check_size(turns, max_chars, "messages")
    others = {k: v for k, v in record.data.items() if k not in adapted.used}
    meta = {"file": unit.location, "row": record.row, "format": unit.format, "fields": others}
    return _pool_row(unit, record.row, turns, adapted.reference, meta)


def _generated_rows(unit: Unit, max_chars: int) -> Iterator[dict]:
    settings = json.loads(unit.generator)
    rows = mathematics.generate(
        unit.start,
        unit.stop,
        seed=settings["seed"],
        modules=tuple(settings["modules"]),
        difficulty=settings["difficulty"],
        split=settings["split"],
        heldout_fraction=settings["heldout_fraction"],
    )
    for row in rows:
        turns = [
            ("user", normalize.text(row.question, "question")),
            ("assistant", normalize.text(row.answer, "answer")),
        ]
        meta = {
            "generator": "mathematics",
            "module": row.module,
            "split": settings["split"],
            "seed": settings["seed"],
            "index": row.index,
        }
        yield _generated_row(unit, row.index, turns, turns[1][1], meta, max_chars, f"{row.question} => {row.answer}")


def _conversation_rows(unit: Unit, max_chars: int) -> Iterator[dict]:
    corpus, recipe = conversations.prepared(json.loads(unit.generator))
    for row in conversations.generate(unit.start, unit.stop, corpus, recipe):
        turns = [(r, normalize.text(c, "messages")) for r, c in row.turns]
        meta = {
            "generator": "conversations",
            "seed": recipe.seed,
            "index": row.index,
            "bases": row.bases,  # [corpus file, record] of each user turn
            "variant_of": row.variant_of,
        }
        yield _generated_row(unit, row.index, turns, row.reference, meta, max_chars)


def _generated_row(
    unit: Unit, index: int, turns, reference, meta: dict, max_chars: int, raw: str | None = None
) -> dict:
    """Row `index` of a generated source, or its reject (`raw`, else the turns as JSON) when
    past `max_chars`."""
    try:
        normalize.check_size(turns, max_chars, "messages")
    except normalize.RowError as error:
        return _reject(unit, index + 1, error, json.dumps(turns) if raw is None else raw)
    return _pool_row(unit, index - unit.start + 1, turns, reference, meta)


def _pool_row(unit: Unit, row: int, turns, reference: str | None, meta: dict) -> dict:
    return {
        "id": normalize.example_id(turns),
        "source": unit.source,
        "messages": [{"role": r, "content": c} for r, c in turns],
        "reference": reference,
        "meta": _META.encode(meta),
        "seq": (unit.index << 32) | row,
    }


def _reject(unit: Unit, row: int, error: normalize.RowError, raw: str) -> dict:
    return {
        "stage": "ingest",
        "source": unit.source,
        "file": unit.location or f"{unit.source}:{unit.start}-{unit.stop}",
        "row": row,
        "field": error.field,
        "reason": error.reason,
        "detail": error.detail,
        "raw": raw[: readers.RAW_LIMIT],
    }
