"""The report on a hand-made run folder (tests/report_runs.py): the results table's arithmetic
and statistics worked out by hand, the page's conclusion, "best" only where significant, the
plots at any values, and the page as headless Chromium renders it."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
from statistics import stdev

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.report import comparisons, page, plots, stage, stats
from tests.report_runs import make_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture()
def run_dir(tmp_path):
    make_run(tmp_path)
    return tmp_path


def result_rows(run_dir) -> dict:
    return {(r["arm"], r["benchmark"]): r for r in pq.read_table(run_dir / "results").to_pylist()}


def test_results_put_accuracy_next_to_each_arms_compute(run_dir):
    manifest = stage.build(str(run_dir))
    assert manifest["plots"] == list(stage.PLOTS)
    rows = result_rows(run_dir)
    assert rows[("base-tiny", "gsm8k")]["method"] == "base" and rows[("base-tiny", "gsm8k")]["compute_seconds"] == 0
    top = rows[("sft_top", "math-500")]
    assert (top["method"], top["selection"], top["accuracy"]) == ("SFT", "top_ifd", 0.15)
    assert top["data_seconds"] == 1.0 + 30.0 and top["compute_seconds"] == 131.0  # selection + model_loss, + training
    assert top["cpu_hours"] == pytest.approx((36 + 50 + 360) / 3600)  # the same tables' CPU seconds
    random = rows[("sft_random", "gsm8k")]
    assert random["data_seconds"] == 1.0  # the pool is shared by every arm: not counted
    assert random["train_seconds"] == 110.0 and random["cpu_hours"] == pytest.approx((36 + 540) / 3600)  # seed mean
    assert rows[("cft", "gsm8k")]["method"] == "CFT" and rows[("cft", "gsm8k")]["data_seconds"] == 40.0
    assert stage.build(str(run_dir)) == manifest  # nothing changed: skipped


def test_seeds_are_pooled_into_their_arm_s_row(run_dir):
    stage.build(str(run_dir))
    rows = result_rows(run_dir)
    assert "sft_random@s0" not in {arm for arm, _ in rows}
    random = rows[("sft_random", "gsm8k")]  # seed 0: 4/20, seed 1: 6/20
    assert (random["n"], random["runs"], random["correct"]) == (20, 2, 10)
    assert random["accuracy"] == pytest.approx(0.25) and random["accuracy_seed_sd"] == pytest.approx(stdev([0.2, 0.3]))
    # 20 questions answered twice, not 40 trials: the two-level bootstrap, at least Wilson at n = 20
    seeds = np.array([[i < 4 for i in range(20)], [i < 6 for i in range(20)]], dtype=float)
    assert (random["accuracy_low"], random["accuracy_high"]) == pytest.approx(stats.accuracy_interval(seeds))
    assert random["accuracy_low"] <= stats.wilson(5, 20)[0] and random["accuracy_high"] >= stats.wilson(5, 20)[1]
    top = rows[("sft_top", "gsm8k")]
    assert top["accuracy_seed_sd"] is None and (top["accuracy_low"], top["accuracy_high"]) == stats.wilson(16, 20)


def test_every_arm_is_compared_with_the_random_arm_by_hand(run_dir):
    stage.build(str(run_dir))
    rows = result_rows(run_dir)
    assert {row["baseline"] for row in rows.values()} == {"sft_random"}  # trained on the random selection
    random = rows[("sft_random", "gsm8k")]
    assert random["verdict"] == "the baseline" and random["p_value"] is None
    # gsm8k: sft_top q0-15 against the seeds' means (q0-3: 1, q4-5: 1/2, q6-19: 0). d_q x 2:
    # 1, 1 and ten 2s, all one way: only the all-plus and all-minus flips reach it, p = 2 / 2^12
    top = rows[("sft_top", "gsm8k")]
    assert top["difference"] == pytest.approx(0.8 - 0.25) and top["p_value"] == pytest.approx(2 / 2**12)
    assert top["difference_low"] > 0 and top["significant"]
    # base-tiny q0-1: d_q x 2 = -2, -2 (q2, q3), -1, -1 (q4, q5): again all one way, p = 2 / 2^4
    base = rows[("base-tiny", "gsm8k")]
    assert base["p_value"] == pytest.approx(2 / 2**4) and base["difference_high"] < 0
    # six comparisons; Holm: 0.125 is the 2nd smallest (with three more), x5
    assert base["p_holm"] == pytest.approx(5 / 8) and not base["significant"]
    assert base["verdict"] == (
        "no significant difference from sft_random (p = 0.12; Holm over 6: 0.62); 4 of 20 questions differ"
        " (0 ahead, 4 behind); ignores training noise (a single-seed arm); sft_random's 2 seeds: sd 7.1 points,"
        " 20.0 to 30.0%"
    )
    assert top["verdict"].startswith("better than sft_random (p = 0.00049; Holm over 6: 0.0029); 12 of 20")
    # sft_top on math-500 (q0-2) against q0-3 at 1/2: d_q x 2 = 1, 1, 1, -1; p = P(|S| >= 2) = 10/16
    assert rows[("sft_top", "math-500")]["p_value"] == pytest.approx(0.625)
    cft = rows[("cft", "gsm8k")]  # q0-4 against q0-3 and q0-5: q4 +1/2, q5 -1/2, no difference
    assert (cft["difference"], cft["p_value"], cft["difference_low"] <= 0 <= cft["difference_high"]) == (0, 1.0, True)
    detectable = rows[("sft_random", "gsm8k")]["detectable_difference"]
    assert detectable == pytest.approx(stats.detectable_difference(20, 0.25, 0.05 / 6))


def test_the_baseline_the_evaluate_stage_recorded_is_used(tmp_path):
    make_run(tmp_path, baseline="base-tiny")
    stage.build(str(tmp_path))
    rows = result_rows(tmp_path)
    assert {row["baseline"] for row in rows.values()} == {"base-tiny"}
    # the same questions as base-tiny against sft_random, seen from the other side
    assert rows[("sft_random", "gsm8k")]["p_value"] == pytest.approx(2 / 2**4)
    summary = {(r["arm"], r["benchmark"]): r for r in pq.read_table(tmp_path / "eval_summary").to_pylist()}
    seed = summary[("sft_random@s0", "gsm8k")]  # one seed alone (q0-3) against q0-1: McNemar 2 against 0
    assert seed["p_value"] == pytest.approx(2 * 0.5**2) and "one seed each" in seed["verdict"]


def test_the_page_states_what_the_run_can_conclude_and_bolds_only_a_significant_best(run_dir):
    stage.build(str(run_dir))
    document = (run_dir / "report" / "index.html").read_text()
    conclusion = html.unescape(re.search(r'<p class="conclusion">(.*?)</p>', document, re.S).group(1))
    assert "20 questions on gsm8k, 20 questions on math-500" in conclusion
    assert "sft_top is better on gsm8k (+55.0 [+35.0, +75.0] points" in conclusion
    assert "the other 5 comparisons are not" in conclusion
    d = stats.detectable_difference(20, 0.25, 0.05 / 6)
    assert f"about {100 * d:.0f} points on gsm8k" in conclusion
    best = re.findall(r'<td class="best">(.*?)</td>', document)
    assert best == [comparisons.format_accuracy(0.8, *stats.wilson(16, 20))]  # sft_top on gsm8k, nothing else
    assert "(n = 20)" in document and "CPU-hours" in document
    comparison = document[document.index("Compared with the baseline") :]
    first_cells = re.findall(r"<tr><td[^>]*>(.*?)</td>", comparison)
    assert first_cells[0].startswith("better than sft_random")  # the verdict leads each row


def test_nothing_is_best_and_nothing_is_concluded_when_every_arm_ties():
    rows = [
        {"arm": arm, "benchmark": "b", "method": "SFT", "data": None, "n": 40, "runs": 1, "correct": 0,
         "accuracy": 0.0, "accuracy_low": 0.0, "accuracy_high": stats.wilson(0, 40)[1], "accuracy_seed_sd": None,
         "baseline": "a", "difference": None if arm == "a" else 0.0, "difference_low": 0.0, "difference_high": 0.0,
         "p_value": None if arm == "a" else 1.0, "p_holm": None if arm == "a" else 1.0,
         "significant": None if arm == "a" else False, "verdict": "v", "detectable_difference": 0.09,
         "compute_seconds": 1.0, "cpu_hours": 0.0, "gpu_hours": 0.0}
        for arm in ("a", "b", "c")
    ]  # fmt: skip
    assert 'class="best"' not in page.results_table(rows, {"b": None})
    sentence = page.conclusion(rows, 0.05)
    assert "No arm differs significantly from a" in sentence and "cannot tell these arms apart" in sentence
    assert "about 9 points on b" in sentence


def test_plots_stay_readable_when_every_accuracy_is_zero(run_dir):
    import pyarrow as pa

    import schemas

    stage.build(str(run_dir))
    table = pq.read_table(run_dir / "results")
    zeros = [
        {**row, "correct": 0, "accuracy": 0.0, "accuracy_low": 0.0, "accuracy_high": stats.wilson(0, 20)[1]}
        for row in table.to_pylist()
    ]
    assert plots._top(zeros) == pytest.approx(1.15 * 100 * stats.wilson(0, 20)[1])  # 0 to 18.5 %, not -0.04..0.04
    assert plots._top([{"accuracy_high": stats.wilson(0, 5000)[1]}]) == 10.0  # never squashed below 10 %
    assert plots._top(table.to_pylist()) == pytest.approx(1.15 * 100 * stats.wilson(16, 20)[1])
    zero_table = pa.Table.from_pylist(zeros, schema=schemas.SCHEMAS["results"])
    for draw in (plots.accuracy_bars, plots.accuracy_vs_compute):
        import io

        from PIL import Image

        image = np.asarray(Image.open(io.BytesIO(draw(zero_table))).convert("L"))
        assert image.shape[0] > 300 and image.std() > 10  # drawn, not blank
    assert math.isclose(plots._pooled_by_arm(table.to_pylist())["sft_random"]["accuracy"], 14 / 80)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (make test installs Debian's)")
def test_the_page_renders_in_headless_chromium(run_dir, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    stage.build(str(run_dir))
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run"]  # fmt: skip
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=flags)
        view = browser.new_page(viewport={"width": 1200, "height": 900})
        view.goto((run_dir / "report" / "index.html").as_uri())
        images = view.evaluate("[...document.images].map(i => [i.closest('figure').id, i.complete, i.naturalWidth])")
        cells = view.evaluate("[...document.querySelectorAll('table td')].map(td => td.textContent)")
        view.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert [name for name, *_ in images] == list(stage.PLOTS)
    assert all(complete and width > 300 for _, complete, width in images)
    assert "base-tiny" in cells and comparisons.format_accuracy(0.8, *stats.wilson(16, 20)) in cells
    from PIL import Image

    shot = np.asarray(Image.open(tmp_path / "report.png").convert("L"))
    assert shot.shape[0] > 2000 and shot.std() > 10  # a long page, and not blank


def test_the_manifest_records_the_comparison_settings(run_dir):
    recorded = json.loads((run_dir / "eval_summary" / "_SUCCESS.json").read_text())["comparison"]
    assert recorded == {"baseline": "sft_random", "alpha": 0.05, "resamples": 10_000, "seed": 0}
