"""The contamination scorer's matching on the real data in ../shared/data (no Ray: the same
`match_texts` the scorer's tasks run), with the default settings.

`python -m bench.contamination_shared`: prints, per pool file against each benchmark set,
the rows flagged (by match kind) and a few examples; then what the defaults flag in the
demo's and the study's pools (configs/demo.yaml, configs/study_small.yaml: the first
`max_rows_per_file` rows of each file, and their generated school-math rows against their
own held-out set). A pool row's text is every field the ingest adapters put in its turns.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from pipelines.evaluate.settings import FileBenchmark, MathematicsBenchmark
from pipelines.ingest import mathematics
from pipelines.score import contamination, contamination_index
from pipelines.score.contamination_benchmarks import load_questions

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FILE_BENCHMARKS = ("gsm8k", "math-500", "minerva_math", "aime24", "amc23", "olympiadbench", "theoremqa", "gpqa_diamond")
DEMO_MODULES = ("comparison__closest", "numbers__place_value", "numbers__round_number")


def file_benchmark(name: str) -> list[tuple[str, str, str]]:
    return load_questions(
        FileBenchmark(name=name.replace("-", "_"), path=str(DATA / "benchmarks" / name / "test.jsonl"))
    )


def heldout(rows: int) -> list[tuple[str, str, str]]:
    spec = MathematicsBenchmark(kind="mathematics", rows=rows, modules=DEMO_MODULES, difficulty="easy")
    return load_questions(spec)


def pool_texts() -> dict[str, list[str]]:
    gsm8k = [json.loads(line) for line in (DATA / "pools" / "gsm8k_train.jsonl").open(encoding="utf-8")]
    math = pq.read_table(DATA / "pools" / "math_level3to5_train.parquet").to_pylist()
    alpaca = json.loads((DATA / "pools" / "alpaca_en_demo.json").read_text(encoding="utf-8"))
    cft = [
        json.loads(line)
        for part in ("p0", "p1", "p3")
        for line in (DATA / "critiques" / f"dsr_cft_{part}.jsonl").open(encoding="utf-8")
    ]
    return {
        "gsm8k_train": [f"{r['question']}\n{r['answer']}" for r in gsm8k],
        "math_level3to5_train": [f"{r['question']}\n{r['gt_answer']}" for r in math],
        "alpaca": [f"{r['instruction']}\n{r.get('input') or ''}\n{r['output']}" for r in alpaca],
        "cft": [contamination.row_text(r["messages"]) for r in cft],
    }


def school_math(rows: int) -> list[str]:
    generated = mathematics.generate(
        0, rows, seed=0, modules=DEMO_MODULES, difficulty="easy", split="train", heldout_fraction=0.05
    )
    return [f"{item.question}\n{item.answer}" for item in generated]


def check(label: str, texts: list[str], questions: list, show: int = 3) -> list[list]:
    index = contamination_index.build(questions)
    started = time.perf_counter()
    found = contamination.match_texts(texts, index)
    seconds = time.perf_counter() - started
    flagged = [(text, matches) for text, matches in zip(texts, found, strict=True) if matches]
    kinds = Counter(matches[0].match for _, matches in flagged)
    by_benchmark = Counter(matches[0].benchmark for _, matches in flagged)
    print(
        f"{label}: {len(flagged)} of {len(texts)} rows flagged ({dict(kinds)}; by benchmark {dict(by_benchmark)}); "
        f"n by benchmark {index.n_by_benchmark}; {len(texts) / seconds:,.0f} rows/s"
    )
    for text, matches in flagged[:show]:
        best = matches[0]
        print(
            f"    {best.benchmark}/{best.question_id} {best.match} {best.matched_ngrams} n-grams "
            f"overlap {best.overlap:.2f}: {text[:160]!r}"
        )
    return found


def main(quick: bool = False) -> None:
    benchmarks = {name: file_benchmark(name) for name in FILE_BENCHMARKS}
    every = [q for questions in benchmarks.values() for q in questions]
    pools = pool_texts()
    check("gsm8k_train vs gsm8k test", pools["gsm8k_train"], benchmarks["gsm8k"])
    check("math_level3to5_train vs math-500", pools["math_level3to5_train"], benchmarks["math-500"])
    check("math_level3to5_train vs every benchmark", pools["math_level3to5_train"], every)
    check("gsm8k_train vs every benchmark", pools["gsm8k_train"], every)
    check("alpaca vs every benchmark", pools["alpaca"], every)
    check("cft vs every benchmark", pools["cft"], every)
    for label, rows, heldout_rows, firsts in (
        ("demo", 3000, 60, (500, 300, 300)),
        ("study", 1500, 300, (600, 300, 300)),
    ):
        questions = heldout(heldout_rows) + benchmarks["gsm8k"]
        check(f"{label}: school math ({rows}) vs its held-out set + gsm8k", school_math(rows), questions)
        for pool, first in zip(("gsm8k_train", "math_level3to5_train", "alpaca"), firsts, strict=True):
            check(f"{label}: {pool} first {first} vs held-out + gsm8k", pools[pool][:first], questions, show=1)


if __name__ == "__main__":
    main()
