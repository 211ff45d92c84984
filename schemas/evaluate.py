"""Evaluation tables: benchmark questions, per-sample results, and the accuracy summary."""

import pyarrow as pa

from schemas.report import COMPARISON, INTERVAL

# One benchmark question, whatever file it came from (pipelines/evaluate/benchmarks.py).
BENCHMARK = pa.schema(
    [
        pa.field("question_id", pa.string(), nullable=False),  # unique within its benchmark
        pa.field("benchmark", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        pa.field("gold", pa.string(), nullable=False),  # the final answer; an option letter for kind 'choice'
        pa.field("kind", pa.string(), nullable=False),  # 'free' (graded by value) or 'choice' (by letter)
        pa.field("choices", pa.list_(pa.string())),  # option texts in letter order; null for 'free'
        pa.field("meta", pa.string(), nullable=False),  # JSON: the file, row and fields not mapped above
    ]
)

# eval/<ARM>/<BENCH>: one row per question, a failed generation included (output null, wrong).
EVAL_RESULTS = pa.schema(
    [
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),  # JSON of the chat messages sent
        pa.field("output", pa.string()),  # null when generation failed
        pa.field("extracted", pa.string()),  # the final answer found in the output; null when none
        pa.field("gold", pa.string(), nullable=False),
        pa.field("correct", pa.bool_(), nullable=False),
        pa.field("rule", pa.string(), nullable=False),  # grading rule that decided (exact, numeric, ...)
        pa.field("status", pa.string(), nullable=False),  # generation: 'ok' | 'failed'
        pa.field("error", pa.string()),  # why generation failed; a re-run retries it (unless the prompt is too long)
        pa.field("finish_reason", pa.string()),  # 'stop', 'length' (truncated), ...
        pa.field("output_tokens", pa.int32()),
    ]
)

# eval_summary: accuracy per arm (each seed's run its own row) and benchmark, with its interval
# and the run's paired comparison with the baseline arm (every seed of the baseline pooled).
EVAL_SUMMARY = pa.schema(
    [
        pa.field("arm", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),  # the model reference the arm evaluated
        pa.field("benchmark", pa.string(), nullable=False),
        pa.field("n", pa.int64(), nullable=False),
        pa.field("correct", pa.int64(), nullable=False),
        pa.field("accuracy", pa.float64(), nullable=False),  # correct / n (failed generations count as wrong)
        pa.field("no_answer", pa.int64(), nullable=False),  # outputs with no final answer found
        pa.field("truncated", pa.int64(), nullable=False),  # outputs cut at max_tokens
        pa.field("failed", pa.int64(), nullable=False),  # generations that failed after retries
        pa.field("generation_seconds", pa.float64(), nullable=False),
        pa.field("grading_seconds", pa.float64(), nullable=False),
        *INTERVAL,
        *COMPARISON,
    ]
)
