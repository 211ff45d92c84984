"""The report's "Show the evidence" section: the rows behind its numbers (docs/evidence.md).

Per comparison with the baseline, a few questions the two arms disagree on; per selection,
a few of its rows next to a few random pool rows; for CFT, a few critiques with the
teacher's conclusion against the reference's verdict. Each list is the rows of a named
query in sql/ (evidence_*.sql), so `winnow sql RUN NAME -p ...` shows the same rows; the
one thing added here is each listed question's text, which the `evals` view does not carry
(it is read from the eval tables' `prompt`, for the listed questions only). Every value is
escaped; each list is a collapsed <details>; a part whose tables are absent is left out.
"""

from __future__ import annotations

import html
import json

import duckdb

from pipelines import views
from pipelines.report import comparisons, results

TEXT_CHARS = 300  # the cut the evidence_*.sql queries make, kept for the question text
STYLE = (  # long unbroken text wraps anywhere; short cells (ids) keep a width that holds them whole
    "<style>.evidence th, .evidence td { text-align: left; vertical-align: top; }"
    " .evidence td { white-space: pre-wrap; overflow-wrap: anywhere; min-width: 4rem; max-width: 28rem; }"
    " .evidence summary { cursor: pointer; margin: 0.4rem 0; }</style>"
)
NOTE = (
    '<p class="note">The rows behind the numbers, a few of each, drawn in a seeded md5 order of their id: '
    "<code>winnow sql RUN evidence_disagreements -p a=ARM -p b=BASELINE</code>, "
    "<code>winnow sql RUN evidence_selection_rows -p selection=NAME</code> and "
    "<code>winnow sql RUN evidence_critiques</code> list the same rows. Texts are cut at "
    f"{TEXT_CHARS} characters (…).</p>"
)


def section(connection: duckdb.DuckDBPyConnection, run_dir: str) -> str:
    """The section's HTML for the run in `run_dir` (`connection`: its views.connect); empty
    when it has none of the tables."""
    present = set(views.views(connection))
    parts = [
        comparison_evidence(connection, run_dir) if "evals" in present else "",
        selection_evidence(connection) if {"selections", "pool"} <= present else "",
        critique_evidence(connection) if {"critiques", "candidates", "pool"} <= present else "",
    ]
    body = "".join(parts)
    if not body:
        return ""
    return f'<section class="evidence" id="evidence">\n<h2>Show the evidence</h2>\n{STYLE}\n{NOTE}\n{body}</section>\n'


def named_rows(connection: duckdb.DuckDBPyConnection, query: str, **parameters: str) -> list[dict]:
    columns, rows = views.run_query(connection, query, parameters)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def compared_arms(connection: duckdb.DuckDBPyConnection) -> tuple[str | None, list[str]]:
    """(the baseline, the arms compared with it), chosen as the report's results table does."""
    runs = [run for (run,) in connection.execute("SELECT DISTINCT run FROM evals").fetchall()]
    arms = comparisons.group_runs(runs)
    manifests = results.manifests_by_table(connection)
    baseline = results.baseline_of(arms, results.settings_of(manifests), manifests)
    return baseline, [arm for arm in arms if baseline is not None and arm != baseline]


def comparison_evidence(connection: duckdb.DuckDBPyConnection, run_dir: str) -> str:
    baseline, arms = compared_arms(connection)
    blocks = []
    for arm in arms:
        rows = named_rows(connection, "evidence_disagreements", a=arm, b=baseline)
        if not rows:
            continue
        texts = question_texts(connection, run_dir, {(row["benchmark"], row["question_id"]) for row in rows})
        totals = {row["benchmark"]: row["disagreeing"] for row in rows}
        listed = "; ".join(
            f"{sum(r['benchmark'] == b for r in rows)} of {total} on {b}" for b, total in sorted(totals.items())
        )
        lines = [
            [
                row["benchmark"],
                row["question_id"],
                texts.get((row["benchmark"], row["question_id"]), ""),
                row["gold"],
                answers(row["a_extracted"], row["a_seeds"], row["a_right"]),
                answers(row["b_extracted"], row["b_seeds"], row["b_right"]),
            ]
            for row in rows
        ]
        headers = ["benchmark", "question id", "question", "gold", f"{arm}: extracted", f"{baseline}: extracted"]
        blocks.append(details(f"{arm} against {baseline}: questions they disagree on, {listed}", table(headers, lines)))
    return _part("Where the arms disagree", blocks)


def answers(extracted: list[str | None], seeds: list[int | None], right: int) -> str:
    """`2 (s0), (none) (s1); 1 of 2 right`: each run's extracted answer, in seed order."""
    each = [f"{'(none)' if answer is None else answer}{'' if seed is None else f' (s{seed})'}"
            for answer, seed in zip(extracted, seeds, strict=True)]  # fmt: skip
    return f"{', '.join(each)}; {right} of {len(each)} right"


def question_texts(
    connection: duckdb.DuckDBPyConnection, run_dir: str, wanted: set[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """(benchmark, question_id) -> the question as the model was asked it (the last user turn
    of the eval table's `prompt`), cut at TEXT_CHARS; for the `wanted` questions only."""
    found: dict[tuple[str, str], str] = {}
    for folder, files in sorted(views.table_folders(run_dir).items()):
        if len(folder) != 3 or folder[0] != "eval":
            continue
        benchmark = folder[2]
        missing = [question for b, question in wanted if b == benchmark and (b, question) not in found]
        if not missing:
            continue
        chosen = duckdb.ColumnExpression("question_id").isin(*map(duckdb.ConstantExpression, missing))
        rows = views.relation(connection, files).filter(chosen).select("question_id", "prompt").fetchall()
        for question_id, prompt in rows:
            if question := user_turn(prompt):  # else another run's prompt may have it
                found[(benchmark, question_id)] = shorten(question)
    return found


def user_turn(prompt: str | None) -> str:
    """The last user turn of a prompt stored as JSON chat messages; the prompt itself if not."""
    try:
        messages = json.loads(prompt or "")
    except ValueError:
        return prompt or ""
    users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return str(users[-1]) if users and users[-1] is not None else ""


def shorten(text: str, chars: int = TEXT_CHARS) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def selection_evidence(connection: duckdb.DuckDBPyConnection) -> str:
    names = [name for (name,) in connection.execute("SELECT DISTINCT selection FROM selections ORDER BY 1").fetchall()]
    blocks = []
    headers = ["id", "source", "rank in the selection", "prompt", "response"]
    for name in names:
        rows = named_rows(connection, "evidence_selection_rows", selection=name)
        tables = []
        for drawn_from, caption in (("selection", f"Rows of {name}"), ("pool", "Random rows of the pool")):
            lines = [[r["id"], r["source"], r["rank"], r["prompt"], r["response"]] for r in rows
                     if r["drawn_from"] == drawn_from]  # fmt: skip
            tables.append(f"<h4>{html.escape(caption)}</h4>\n{table(headers, lines)}")
        blocks.append(details(f"selection {name}: a few of its rows next to random pool rows", "\n".join(tables)))
    return _part("What each selection picked", blocks)


def critique_evidence(connection: duckdb.DuckDBPyConnection) -> str:
    rows = named_rows(connection, "evidence_critiques")
    if not rows:
        return ""
    headers = ["question", "candidate solution", "critique (its end)", "teacher's conclusion", "verdict vs reference"]
    lines = [
        [r["question"], r["solution"], r["critique_end"], r["conclusion"] or "(none)", r["verdict"] or "(no reference)"]
        for r in rows
    ]
    return _part("Critiques against the reference", [details("CFT: a few critiques", table(headers, lines))])


def _part(heading: str, blocks: list[str]) -> str:
    return f"<h3>{html.escape(heading)}</h3>\n" + "\n".join(blocks) + "\n" if blocks else ""


def details(summary: str, body: str) -> str:
    return f"<details><summary>{html.escape(summary)}</summary>\n{body}\n</details>"


def table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(header)}</th>" for header in headers)
    body = "".join("<tr>" + "".join(f"<td>{_text(cell)}</td>" for cell in row) + "</tr>\n" for row in rows)
    return f"<table><tr>{head}</tr>\n{body}</table>"


def _text(value) -> str:
    return "" if value is None else html.escape(str(value))
