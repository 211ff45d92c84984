"""Clean candidates: by default a selection skips near-duplicates that are not their cluster's
kept row (`dedupe: near`, scores/near_dup) and rows that match a benchmark question
(`decontaminate: true`, scores/contamination).

A skip applies when its table is in the run; where it is not, nothing is skipped and the
manifest says so. The skips are conditions on the candidate rows, so every method (the SQL
rankings, k-center, ZIP) draws from the same clean candidates.
"""

from __future__ import annotations

from pipelines import runs

# option -> (table of a value, the SQL condition a candidate `p` must meet); the view names
# are these fixed strings, never user text
DEDUPE_TABLES = {"near": "scores/near_dup", "semantic": "scores/semantic_dup"}
CONTAMINATION_TABLE = "scores/contamination"
_KEPT = 'p.id NOT IN (SELECT id FROM {view} WHERE NOT "keep")'
_CLEAN = 'p.id NOT IN (SELECT id FROM {view} WHERE "contaminated")'


def wanted(spec) -> dict[str, str]:
    """option name -> the table it reads, for the options this selection turns on."""
    tables = {}
    if spec.dedupe != "off":
        tables["dedupe"] = DEDUPE_TABLES[spec.dedupe]
    if spec.decontaminate:
        tables["decontaminate"] = CONTAMINATION_TABLE
    return tables


def present(run_dir: str, spec) -> dict[str, str]:
    """The options whose table is finished in the run: the skips that apply."""
    return {option: table for option, table in wanted(spec).items() if runs.read_manifest(run_dir, table) is not None}


def conditions(skips: dict[str, str]) -> list[str]:
    """SQL conditions on the candidate rows (alias `p`) for the skips that apply."""
    found = []
    for option, table in sorted(skips.items()):
        template = _KEPT if option == "dedupe" else _CLEAN
        found.append(template.format(view=_view(table)))
    return found


def views_read(skips: dict[str, str]) -> set[str]:
    return {_view(table) for table in skips.values()}


def summary(connection, spec, skips: dict[str, str], candidates_sql: str, parameters: dict) -> dict:
    """What each option did: its setting, its table, and how many of the candidates meeting
    `where` it removed (a row both options remove counts in both)."""
    report = {}
    for option, table in wanted(spec).items():
        setting = spec.dedupe if option == "dedupe" else spec.decontaminate
        if option not in skips:
            note = f"{table} is not in the run: nothing skipped"
            report[option] = {"setting": setting, "table": None, "removed": 0, "note": note}
            continue
        condition = conditions({option: table})[0]
        sql = f"SELECT count(*) FROM ({candidates_sql}) p WHERE NOT ({condition})"
        (removed,) = connection.execute(sql, parameters).fetchone()
        report[option] = {"setting": setting, "table": table, "removed": int(removed)}
    for option, setting in (("dedupe", spec.dedupe), ("decontaminate", spec.decontaminate)):
        report.setdefault(option, {"setting": setting, "table": None, "removed": 0, "note": "off"})
    return report


def _view(table: str) -> str:
    return table.replace("/", "_")
