"""Critique Fine-Tuning tables: questions, candidate answers, critiques, CFT examples."""

import pyarrow as pa

from schemas.pool import MESSAGE

# The stage's working list (in _work): pool rows usable as questions.
QUESTIONS = pa.schema(
    [
        pa.field("question_id", pa.string(), nullable=False),  # the pool id
        pa.field("source", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),  # the last user turn before the response
        pa.field("reference", pa.string()),  # gold final answer, when the pool has one
        pa.field("response", pa.string()),  # the pool's own answer, when it has one
    ]
)

CANDIDATES = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # the candidate: hash of (question_id, candidate_index)
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("candidate_index", pa.int32(), nullable=False),
        pa.field("solution", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),  # who answered: a model reference, or "pool"
        pa.field("sampling", pa.string(), nullable=False),  # JSON of the sampling settings
    ]
)

CRITIQUES = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # the candidate's id
        pa.field("critique", pa.string()),  # the teacher's text, [END] stripped; null when failed
        pa.field("conclusion", pa.string()),  # the teacher's verdict: right | wrong | null (none found)
        pa.field("verdict", pa.string()),  # the candidate graded against the reference: right | wrong | null
        pa.field("agrees", pa.bool_()),  # conclusion == verdict; null when either is null
        pa.field("teacher", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # ok | failed
        pa.field("error", pa.string()),
        pa.field("attempts", pa.int32(), nullable=False),
    ]
)

CFT = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # the candidate's id
        pa.field("messages", pa.list_(MESSAGE), nullable=False),  # user: question + solution; assistant: critique
        pa.field("label", pa.string(), nullable=False),  # right | wrong (the teacher's conclusion)
        pa.field("question_id", pa.string(), nullable=False),
    ]
)
