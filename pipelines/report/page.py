"""One self-contained HTML page: the results table as in the papers, then every plot
(PNG files beside the page, also embedded so the page can be mailed on its own)."""

from __future__ import annotations

import base64
import html

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.7rem; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
td.best { font-weight: bold; }
figure { margin: 1.5rem 0; } img { max-width: 100%; } figcaption { color: #555; font-size: 0.9rem; }
.note { color: #666; font-size: 0.9rem; }
"""


def results_table(rows: list[dict]) -> str:
    """Rows: arms (method, selection); columns: benchmarks, their mean, and compute."""
    if not rows:
        return '<p class="note">No arm has been evaluated yet.</p>'
    benchmarks = sorted({r["benchmark"] for r in rows})
    arms: dict[str, dict] = {}
    for r in rows:
        arms.setdefault(r["arm"], {**r, "scores": {}})["scores"][r["benchmark"]] = 100 * r["accuracy"]
    best = {b: max(a["scores"].get(b, -1) for a in arms.values()) for b in benchmarks}
    head = "".join(f"<th>{html.escape(b)}</th>" for b in benchmarks)
    lines = [f"<table><tr><th>arm</th><th>method</th><th>data</th>{head}<th>mean</th><th>compute (s)</th></tr>"]
    for name, arm in sorted(arms.items(), key=lambda item: (item[1]["method"] != "base", item[0])):
        cells = "".join(_cell(arm["scores"].get(b), best[b]) for b in benchmarks)
        mean = sum(arm["scores"].values()) / len(arm["scores"])
        data = html.escape(arm["data"] or "")
        lines.append(
            f'<tr><td class="text">{html.escape(name)}</td><td class="text">{arm["method"]}</td>'
            f'<td class="text">{data}</td>{cells}<td>{mean:.1f}</td><td>{arm["compute_seconds"]:,.0f}</td></tr>'
        )
    return "\n".join(lines) + "</table>"


def _cell(score: float | None, best: float) -> str:
    if score is None:
        return "<td></td>"
    return f'<td class="{"best" if score == best else ""}">{score:.1f}</td>'


def figure(name: str, png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="{name}"><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f'<figcaption>{html.escape(caption)} (<a href="{name}.png">{name}.png</a>)</figcaption></figure>'
    )


def page(title: str, run_dir: str, table_html: str, figures: list[str], missing: list[str]) -> str:
    absent = "".join(f"<li>{html.escape(m)}</li>" for m in missing)
    absent_html = f'<p class="note">Not in this run yet:</p><ul class="note">{absent}</ul>' if missing else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="note">Run folder: <code>{html.escape(run_dir)}</code>. Accuracy in %, best per benchmark in bold;
compute is the wall seconds spent making each arm's data and training it.</p>
<h2>Results</h2>
{table_html}
<h2>Plots</h2>
{"".join(figures)}
{absent_html}
</body></html>
"""
