"""Result rows and per-completion seeds, shared by both engines."""

from __future__ import annotations

import hashlib

import pyarrow as pa

import schemas.generate

MAX_ERROR_CHARS = 2000


def completion_seed(seed: int | None, request_id: str, completion_index: int) -> int | None:
    """A seed of its own for every completion: outputs do not depend on batching, on the
    number of actors, or on which attempt finally produced them."""
    if seed is None:
        return None
    digest = hashlib.sha256(f"{seed}/{request_id}/{completion_index}".encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


def ok_row(pending: dict, output: str, tries: int, prompt_tokens, output_tokens, finish_reason) -> dict:
    return {
        "request_id": pending["request_id"],
        "completion_index": pending["completion_index"],
        "output": output,
        "status": "ok",
        "error": None,
        "attempts": pending["previous_attempts"] + tries,
        "prompt_tokens": prompt_tokens,
        "output_tokens": output_tokens,
        "finish_reason": finish_reason,
    }


def failed_row(pending: dict, error: str, tries: int, prompt_tokens=None) -> dict:
    return {
        "request_id": pending["request_id"],
        "completion_index": pending["completion_index"],
        "output": None,
        "status": "failed",
        "error": error[:MAX_ERROR_CHARS],
        "attempts": pending["previous_attempts"] + tries,
        "prompt_tokens": prompt_tokens,
        "output_tokens": None,
        "finish_reason": None,
    }


def to_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schemas.generate.RESULTS)
