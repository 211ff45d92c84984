"""CFT examples out of critiques: the paper's filters, the reference grading, and the real
critiques of ../shared/data/critiques written through the stage's own table code (pool
candidates -> critique rows -> the cft table) and read back."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
import schemas.critique
from pipelines.critique import candidates, cft, conclusion, critiques
from pipelines.critique.examples import parse_cft
from pipelines.critique.grading import Grader
from pipelines.critique.settings import Filters
from pipelines.generate.results import TOO_LONG
from tests.test_critique_conclusion import real_examples


def light_row(identity: str, **changes) -> dict:
    """A row as cft.write reads it before deciding which critiques become examples."""
    row = {"id": identity, "status": "ok", "error": None, "conclusion": "right", "agrees": True, "solution_chars": 100,
           "critique_chars": 100, "question_digits": True, "solution_digits": True}  # fmt: skip
    return {**row, **changes}


def test_filters_drop_in_order_each_with_its_first_reason():
    rows = [
        light_row("a", status="failed", conclusion=None, solution_digits=False),  # several reasons: the first
        light_row("a2", status="failed", error=f"{TOO_LONG}: 900 tokens", conclusion=None),
        light_row("b", conclusion=None),
        light_row("c", agrees=False),
        light_row("d", solution_digits=False),
        light_row("e", solution_chars=5000),
        light_row("f", agrees=None, critique_chars=300),  # no reference: nothing to disagree with
        *(light_row(f"g{i}", solution_chars=100 + i, critique_chars=200 - i) for i in range(8)),
    ]
    filters = Filters(require_digits_in=["solution"], max_solution_chars=1000, drop_longest_solutions=0.2,
                      drop_shortest_critiques=0.25)  # fmt: skip
    reasons = cft.drop_reasons(rows, filters, drop_disagreeing=True)
    assert reasons == {
        "a": "critique failed",
        "a2": "question and solution too long for the teacher",
        "b": "no conclusion in the critique",
        "c": "teacher disagrees with the reference",
        "d": "no digits in the solution",
        "e": "solution over max_solution_chars",
        "g7": "among the longest solutions",  # int(0.2 x 9 left) = 1: the longest
        "g6": "among the shortest critiques",  # int(0.25 x 8 left) = 2: the two shortest
        "g5": "among the shortest critiques",
    }
    kept = cft.drop_reasons(rows, Filters(), drop_disagreeing=False)
    assert set(kept) == {"a", "a2", "b"}  # by default only critiques that are not examples at all


def test_candidates_are_graded_against_the_reference():
    cases = [
        ("So $x = \\frac{1}{2}$, and the answer is \\boxed{\\frac{1}{2}}.", "0.5", "right"),
        ("The answer is 7.", "8", "wrong"),
        ("We get 12 apples and then 5 more: 17", "17", "right"),  # the last number
        ("c", "c", "right"),  # a bare answer is graded whole
        ("-1, 2/3, 4", "-1, \\frac{2}{3}, 4", "right"),
        ("Seven.", "7", "wrong"),
        ("Anything at all", None, None),  # no reference: no verdict
    ]
    with Grader(timeout_s=5.0, workers=2) as grader:
        found = grader.verdicts([(solution, reference) for solution, reference, _ in cases])
    assert found == [verdict for *_, verdict in cases]


def test_real_critiques_through_the_stage_tables(shared_data, tmp_path):
    examples = real_examples(shared_data)
    questions, originals = [], {}
    for name, number, row in examples:
        question, solution, critique = parse_cft(row["messages"])
        question_id = f"{name}:{number}"
        questions.append({"question_id": question_id, "source": name, "question": question, "reference": None,
                          "response": solution})  # fmt: skip
        originals[question_id] = (row["messages"], critique)
    files = {name: str(tmp_path / f"{name}.parquet") for name in ("questions", "candidates", "critiques")}
    pq.write_table(pa.Table.from_pylist(questions, schema=schemas.critique.QUESTIONS), files["questions"])
    found, rejects = candidates.from_pool(files["questions"], files["candidates"])
    assert found == {"asked": 1800, "failed": 0, "too_long": 0, "empty": 0, "kept": 1800} and rejects == []
    written = pq.read_table(files["candidates"]).to_pylist()
    rows = []
    for candidate in written:  # the teacher's output is the real critique, as the engine would return it
        result = {"id": candidate["id"], "output": originals[candidate["question_id"]][1], "status": "ok",
                  "error": None, "attempts": 1}  # fmt: skip
        rows.append(critiques.critique_row(result, None, "real"))
    table = pa.Table.from_pylist(rows, schema=schemas.critique.CRITIQUES)
    schemas.check("critiques", table, schemas.critique.CRITIQUES)
    pq.write_table(table, files["critiques"])

    counts, rejects = cft.write(files, Filters(), False, str(tmp_path / "cft.parquet"))
    assert counts["rows"] == 1800 and rejects == []
    out = pq.read_table(tmp_path / "cft.parquet")
    schemas.check("cft", out, schemas.critique.CFT)
    labels = Counter()
    for row in out.to_pylist():
        messages, critique = originals[row["question_id"]]
        question, solution, stored = parse_cft(row["messages"])
        assert (question, solution) == parse_cft(messages)[:2], row["question_id"]
        assert stored == conclusion.strip_end(critique) and "[END]" not in stored[-10:]
        assert row["label"] == conclusion.parse(critique)
        labels[row["label"]] += 1
    assert {label: counts["labels"][label]["rows"] for label in ("right", "wrong")} == labels
    assert counts["labels"]["right"]["fraction"] == pytest.approx(labels["right"] / 1800, abs=1e-4)
