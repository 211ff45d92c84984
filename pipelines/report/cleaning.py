"""The report's "Clean pools" sections (docs/cleaning.md). Contamination: pool rows that
contain benchmark questions (scores/contamination), counted by source and benchmark, a few of
them, and whether any trained arm's data held one. Near-duplicates: rows in clusters and rows
not kept (scores/near_dup), by source, and a few clusters (named queries `near_dup` and
`near_dup_examples`).

The counts and examples are the named queries `contamination` and `contamination_examples`
(`winnow sql RUN contamination` shows the same rows). An arm's data is its training
manifest's `data`: `selection:NAME` (the selection's rows) or `cft` (the pool questions its
CFT examples came from); a file given by path was made outside the run and is not checked.
Every value is escaped; the examples are a collapsed <details>. No table: no section.
"""

from __future__ import annotations

import html

from pipelines import views
from pipelines.report import results

ARM_QUERIES = {  # values bound as $parameters; names are ours
    "selection": (
        "SELECT count(*) FROM selections AS s JOIN scores_contamination AS c USING (id) "
        "WHERE s.selection = $name AND c.contaminated"
    ),
    "cft": (
        "SELECT count(DISTINCT f.question_id) FROM cft AS f "
        "JOIN scores_contamination AS c ON c.id = f.question_id WHERE c.contaminated"
    ),
}


def section(run_dir: str) -> str:
    """The sections' HTML; empty where the run has neither table."""
    connection = views.connect(run_dir)
    present = set(views.views(connection))
    return _contamination(connection, present) + _near_duplicates(connection, present)


def _near_duplicates(connection, present: set[str]) -> str:
    if not {"scores_near_dup", "pool"} <= present:
        return ""
    in_clusters, not_kept, total = connection.execute(
        "SELECT count(*) FILTER (WHERE cluster_size > 1), count(*) FILTER (WHERE NOT keep), count(*) "
        "FROM scores_near_dup"
    ).fetchone()
    summary = (
        f"{in_clusters} of {total} pool rows have a near-duplicate; {not_kept} are not kept, and "
        "selections skip them unless `dedupe: off`."
    )
    body = _findings(connection, summary, in_clusters, ("near_dup", "near_dup_examples", "A few clusters"))
    return _section("near-duplicates", "Near-duplicates", body)


def _contamination(connection, present: set[str]) -> str:
    if not {"scores_contamination", "pool"} <= present:
        return ""
    (flagged, total) = connection.execute(
        "SELECT count(*) FILTER (WHERE contaminated), count(*) FROM scores_contamination"
    ).fetchone()
    summary = f"{flagged} of {total} pool rows contain a benchmark question (prompt or response)."
    queries = ("contamination", "contamination_examples", "A few contaminated rows")
    body = _findings(connection, summary, flagged, queries)
    return _section("contamination", "Contamination", [*body, _arms(connection, present)])


def _findings(connection, summary: str, found: int, queries: tuple[str, str, str]) -> list[str]:
    """The summary line naming its query; where anything was found, the counts and a
    collapsed list of examples (both named queries, so `winnow sql` shows the same rows)."""
    counts, examples, label = queries
    body = [f'<p class="note">{html.escape(summary)} <code>winnow sql RUN {counts}</code> shows them.</p>']
    if found:
        body.append(_table(*views.run_query(connection, counts)))
        body.append(f"<details><summary>{label}</summary>{_table(*views.run_query(connection, examples))}</details>")
    return body


def _section(anchor: str, title: str, body: list[str]) -> str:
    return f'<section id="{anchor}">\n<h2>{title}</h2>\n' + "\n".join(body) + "\n</section>\n"


def trained_arms(connection, present: set[str]) -> list[tuple[str, str | None, int | None]]:
    """(arm run, its data reference, contaminated rows in that data or None when not checkable)."""
    checked = []
    for table, manifest in sorted(results.manifests_by_table(connection).items()):
        if not table.startswith("models/"):
            continue
        reference = manifest.get("data")
        checked.append((table.removeprefix("models/"), reference, contaminated_in(connection, present, reference)))
    return checked


def contaminated_in(connection, present: set[str], reference: str | None) -> int | None:
    if reference and reference.startswith("selection:") and "selections" in present:
        name = reference.removeprefix("selection:")
        return connection.execute(ARM_QUERIES["selection"], {"name": name}).fetchone()[0]
    if reference == "cft" and "cft" in present:
        return connection.execute(ARM_QUERIES["cft"]).fetchone()[0]
    return None


def _arms(connection, present: set[str]) -> str:
    arms = trained_arms(connection, present)
    if not arms:
        return '<p class="note">No arm has been trained yet.</p>'
    dirty = [f"{arm} ({count} rows)" for arm, _, count in arms if count]
    unknown = [arm for arm, _, count in arms if count is None]
    verdict = (
        f"Trained on contaminated rows: {', '.join(dirty)}." if dirty else "No trained arm saw a contaminated row."
    )
    if unknown:
        verdict += f" Not checkable (data made outside this run): {', '.join(unknown)}."
    return f'<p class="conclusion">{html.escape(verdict)}</p>'


def _table(columns: list[str], rows: list[tuple]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    lines = [f"<table><tr>{head}</tr>"]
    for row in rows:
        cells = "".join(f'<td class="text">{html.escape(_text(value))}</td>' for value in row)
        lines.append(f"<tr>{cells}</tr>")
    return "\n".join(lines) + "</table>"


def _text(value) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)
