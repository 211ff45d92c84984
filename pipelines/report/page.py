"""One self-contained HTML page: what the run can conclude, the results table as in the
papers (every accuracy with its n and 95% interval), the comparison with the baseline arm
(verdict first), then every plot (PNG files beside the page, also embedded so the page can
be mailed on its own)."""

from __future__ import annotations

import base64
import html

from pipelines.report.comparisons import format_accuracy, format_difference, format_p

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.7rem; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
td.best { font-weight: bold; }
td.significant { font-weight: bold; }
.seeds { color: #666; font-size: 0.8rem; display: block; }
.conclusion { font-size: 1.05rem; background: #f6f6f6; padding: 0.8rem 1rem; border-left: 4px solid #888; }
figure { margin: 1.5rem 0; } img { max-width: 100%; } figcaption { color: #555; font-size: 0.9rem; }
.note { color: #666; font-size: 0.9rem; }
"""


def _arms(rows: list[dict]) -> dict[str, dict]:
    """Arm -> its first row (method, data, compute) and {benchmark: row}, base models first."""
    arms: dict[str, dict] = {}
    for row in rows:
        arms.setdefault(row["arm"], {**row, "by_benchmark": {}})["by_benchmark"][row["benchmark"]] = row
    return dict(sorted(arms.items(), key=lambda item: (item[1]["method"] != "base", item[0])))


def _sizes(rows: list[dict]) -> dict[str, int]:
    """Benchmark -> its question count (the largest any arm answered)."""
    sizes: dict[str, int] = {}
    for row in rows:
        sizes[row["benchmark"]] = max(sizes.get(row["benchmark"], 0), row["n"])
    return dict(sorted(sizes.items()))


def conclusion(rows: list[dict], alpha: float) -> str:
    """The sentence at the top: what this run can and cannot conclude at its n."""
    if not rows:
        return "No arm has been evaluated yet: there is nothing to conclude."
    sizes = _sizes(rows)
    n_text = ", ".join(f"{n} questions on {benchmark}" for benchmark, n in sizes.items())
    baseline = rows[0]["baseline"]
    if baseline is None:
        return f"This run has no baseline arm to compare with ({n_text}): it shows accuracies with intervals only."
    tested = [row for row in rows if row["p_value"] is not None]
    base_rows = {row["benchmark"]: row for row in rows if row["arm"] == baseline}
    detectable = [
        f"{100 * base_rows[b]['detectable_difference']:.0f} points on {b}"
        for b in sizes
        if b in base_rows and base_rows[b]["detectable_difference"] is not None
    ]
    power = (
        f"With {n_text}, it detects a change from {baseline} of about {' and '.join(detectable)} with 80% power "
        f"(alpha {alpha:g} split {len(tested)} ways for Holm; for one model per arm on those questions, as two "
        "independent samples: pairing can only do better, training noise makes it worse): smaller differences "
        "may be real, but this run cannot show them. "
    )
    significant = [row for row in tested if row["significant"]]
    if not tested:
        return power + "It has no arm besides the baseline, so it compares nothing."
    if not significant:
        return power + (
            f"No arm differs significantly from {baseline} on any benchmark (paired sign-flip test on the questions, "
            f"Holm over {len(tested)} comparisons, alpha {alpha:g}), so it cannot tell these arms apart."
        )
    found = "; ".join(
        f"{row['arm']} is {'better' if row['difference'] > 0 else 'worse'} on {row['benchmark']} "
        f"({format_difference(row['difference'], row['difference_low'], row['difference_high'])} points, "
        f"Holm p {format_p(row['p_holm'])})"
        for row in significant
    )
    rest = len(tested) - len(significant)
    return power + f"Significant against {baseline} after Holm: {found}; the other {rest} comparisons are not."


def results_table(rows: list[dict], best: dict[str, str | None]) -> str:
    """Rows: arms; columns: each benchmark's accuracy [95% CI] with its n, then compute.
    A cell is bold only where its arm is significantly best on that benchmark (`best`)."""
    if not rows:
        return '<p class="note">No arm has been evaluated yet.</p>'
    sizes = _sizes(rows)
    head = "".join(f"<th>{html.escape(b)} (n = {n})</th>" for b, n in sizes.items())
    lines = [
        f"<table><tr><th>arm</th><th>method</th><th>data</th>{head}"
        "<th>compute (wall s)</th><th>CPU-hours</th><th>GPU-hours</th></tr>"
    ]
    for name, arm in _arms(rows).items():
        cells = "".join(_cell(arm["by_benchmark"].get(b), best.get(b) == name) for b in sizes)
        data = html.escape(arm["data"] or "")
        lines.append(
            f'<tr><td class="text">{html.escape(name)}</td><td class="text">{arm["method"]}</td>'
            f'<td class="text">{data}</td>{cells}<td>{arm["compute_seconds"]:,.0f}</td>'
            f"<td>{arm['cpu_hours']:.3f}</td><td>{arm['gpu_hours']:.3f}</td></tr>"
        )
    return "\n".join(lines) + "</table>"


def _cell(row: dict | None, best: bool) -> str:
    if row is None:
        return "<td></td>"
    text = format_accuracy(row["accuracy"], row["accuracy_low"], row["accuracy_high"])
    if row["runs"] > 1:
        text += f'<span class="seeds">{row["runs"]} seeds, sd {100 * row["accuracy_seed_sd"]:.1f}</span>'
    return f'<td class="{"best" if best else ""}">{text}</td>'


def comparison_table(rows: list[dict]) -> str:
    """One line per arm and benchmark compared with the baseline; the verdict comes first."""
    tested = [row for row in rows if row["p_value"] is not None]
    if not tested:
        return '<p class="note">No comparison: the run has no baseline arm, or no other arm.</p>'
    baseline = tested[0]["baseline"]
    base = {row["benchmark"]: row for row in rows if row["arm"] == baseline}
    lines = [
        "<table><tr><th>verdict</th><th>arm</th><th>benchmark</th><th>n</th><th>accuracy % [95% CI]</th>"
        f"<th>{html.escape(baseline)} % [95% CI]</th><th>difference, points [95% CI]</th>"
        "<th>p (sign-flip)</th><th>p (Holm)</th></tr>"
    ]
    for row in sorted(tested, key=lambda r: (r["benchmark"], r["p_holm"], r["arm"])):
        reference = base.get(row["benchmark"])
        reference_text = (
            format_accuracy(reference["accuracy"], reference["accuracy_low"], reference["accuracy_high"])
            if reference
            else ""
        )
        lines.append(
            f'<tr><td class="text{" significant" if row["significant"] else ""}">{html.escape(row["verdict"])}</td>'
            f'<td class="text">{html.escape(row["arm"])}</td><td class="text">{html.escape(row["benchmark"])}</td>'
            f"<td>{row['n']}</td>"
            f"<td>{format_accuracy(row['accuracy'], row['accuracy_low'], row['accuracy_high'])}</td>"
            f"<td>{reference_text}</td>"
            f"<td>{format_difference(row['difference'], row['difference_low'], row['difference_high'])}</td>"
            f"<td>{_p(row['p_value'])}</td><td>{_p(row['p_holm'])}</td></tr>"
        )
    return "\n".join(lines) + "</table>"


def _p(p: float) -> str:
    """A p-value for a table cell: three significant digits, never 0 ("< 0.0001" below)."""
    return "&lt; 0.0001" if p < 0.0001 else f"{p:.3g}"


def figure(name: str, png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="{name}"><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f'<figcaption>{html.escape(caption)} (<a href="{name}.png">{name}.png</a>)</figcaption></figure>'
    )


def page(title: str, run_dir: str, sections: dict[str, str], figures: list[str], missing: list[str]) -> str:
    """`sections`: conclusion (text), results and comparison (HTML tables), alpha (text), and
    appendix (the cleaning and evidence sections' HTML, the stage's to build: this only renders)."""
    absent = "".join(f"<li>{html.escape(m)}</li>" for m in missing)
    absent_html = f'<p class="note">Not in this run yet:</p><ul class="note">{absent}</ul>' if missing else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="conclusion">{html.escape(sections["conclusion"])}</p>
<p class="note">Run folder: <code>{html.escape(run_dir)}</code>. Accuracy in % with its 95% interval
[low, high], n questions per benchmark: the Wilson interval for one run; an arm with seeds gives the mean over
its seeds, an interval from a two-level bootstrap (seeds, then questions: training noise is in it) and the
seeds' standard deviation. Bold marks an arm only where it is significantly best: better than every other arm
by the verdict rule below after Holm, alpha {html.escape(sections["alpha"])}.
Compute is the wall seconds spent making each arm's data and training one model, beside its CPU- and GPU-hours.</p>
<h2>Results</h2>
{sections["results"]}
<h2>Compared with the baseline</h2>
<p class="note">The unit is the question, each counted once: an arm's answers are averaged per question over
its seeds, and the difference is paired (the same questions). p is the exact paired sign-flip test of the
per-question differences (with one seed each it is the exact McNemar test), Holm-adjusted over every comparison
in this table. Where both arms have 2 or more seeds, the interval comes from a two-level bootstrap (seeds within
each arm, then questions), a difference is significant only if that interval also excludes 0, and the verdict
says whether seeds or questions dominate the noise; otherwise the interval resamples questions only and the
verdict says it ignores training noise, beside the seed spread there is to see.</p>
{sections["comparison"]}
<h2>Plots</h2>
{"".join(figures)}
{absent_html}
{sections["appendix"]}</body></html>
"""
