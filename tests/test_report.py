"""The report on a hand-made run folder: the results table's arithmetic, every plot, and
the page as headless Chromium renders it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from pipelines.report import stage

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def table(folder, name: str, data: dict, schema: pa.Schema, manifest: dict | None = None) -> None:
    (folder / name).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(data, schema=schema), folder / name / "part-00000.parquet")
    if manifest is not None:
        document = {"identity": {"config_hash": name}, "rows_in": 0, "rows_out": 0, "rows_rejected": 0, **manifest}
        (folder / name / "_SUCCESS.json").write_text(json.dumps(document))


@pytest.fixture()
def run_dir(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"r{i:03d}" for i in range(200)]
    messages = [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]] * 200
    pool = {"id": ids, "source": ["s"] * 200, "messages": messages, "reference": [None] * 200, "meta": [None] * 200}
    table(tmp_path, "pool", pool, schemas.SCHEMAS["pool"], {"wall_seconds": 5.0})
    compression = {"id": ids, "n_bytes": [100] * 200, "n_bytes_compressed": [60] * 200,
                   "compression_ratio": rng.normal(1.7, 0.2, 200)}  # fmt: skip
    table(tmp_path, "scores/compression", compression, schemas.SCHEMAS["scores/compression"], {"wall_seconds": 2.0})
    loss = {"id": ids, "n_prompt_tokens": [10] * 200, "n_response_tokens": rng.integers(5, 90, 200).astype(np.int32),
            "loss_given_prompt": rng.normal(3, 0.3, 200), "loss_alone": rng.normal(3.2, 0.3, 200),
            "ifd": [None] * 10 + list(rng.normal(0.9, 0.05, 190)), "truncated": [False] * 200}  # fmt: skip
    table(tmp_path, "scores/model_loss", loss, schemas.SCHEMAS["scores/model_loss"], {"wall_seconds": 30.0})
    for name, chosen, inputs in (
        ("random", ids[:50], {"pool": "x"}),
        ("top_ifd", ids[25:75], {"pool": "x", "scores/model_loss": "y"}),
    ):
        rank = list(range(1, 51))
        table(tmp_path, f"selections/{name}", {"id": chosen, "rank": rank}, schemas.SCHEMAS["selections"],
              {"wall_seconds": 1.0, "inputs": inputs, "method": name})  # fmt: skip
    for arm, data in (("sft_random", "selection:random"), ("sft_top", "selection:top_ifd"), ("cft", "cft")):
        steps = np.arange(1, 11, dtype=np.int32)
        metrics = {"step": steps, "epoch": np.zeros(10, np.int32), "loss": 3 - 0.1 * steps, "lr": [1e-5] * 10,
                   "tokens": [1000] * 10, "loss_tokens": [500] * 10, "seconds": [1.0] * 10,
                   "start_step": np.zeros(10, np.int32)}  # fmt: skip
        table(tmp_path, f"train_metrics/{arm}", metrics, schemas.SCHEMAS["train_metrics"])
        (tmp_path / "models" / arm).mkdir(parents=True)
        manifest = {"identity": {"config_hash": arm}, "data": data, "wall_seconds": 100.0}
        (tmp_path / "models" / arm / "_SUCCESS.json").write_text(json.dumps(manifest))
    table(
        tmp_path, "cft", {"id": ["c"], "messages": [messages[0]]}, schemas.SCHEMAS["train_data"], {"wall_seconds": 40.0}
    )
    arms = ["base-tiny", "sft_random", "sft_top", "cft"]
    accuracy = [0.1, 0.05, 0.2, 0.1, 0.25, 0.15, 0.4, 0.3]
    summary = {"arm": [a for a in arms for _ in range(2)], "model": ["m"] * 8, "benchmark": ["gsm8k", "math-500"] * 4,
               "n": [20] * 8, "correct": [2, 1, 4, 2, 5, 3, 8, 6], "accuracy": accuracy,
               "no_answer": [0] * 8, "truncated": [0] * 8, "failed": [0] * 8, "generation_seconds": [1.0] * 8,
               "grading_seconds": [0.1] * 8}  # fmt: skip
    table(tmp_path, "eval_summary", summary, schemas.SCHEMAS["eval_summary"], {"wall_seconds": 60.0})
    return tmp_path


def test_results_put_accuracy_next_to_each_arms_compute(run_dir):
    manifest = stage.build(str(run_dir))
    assert manifest["plots"] == list(stage.PLOTS)
    rows = {(r["arm"], r["benchmark"]): r for r in pq.read_table(run_dir / "results").to_pylist()}
    assert rows[("base-tiny", "gsm8k")]["method"] == "base" and rows[("base-tiny", "gsm8k")]["compute_seconds"] == 0
    top = rows[("sft_top", "math-500")]
    assert (top["method"], top["selection"], top["accuracy"]) == ("SFT", "top_ifd", 0.15)
    assert top["data_seconds"] == 1.0 + 30.0 and top["compute_seconds"] == 131.0  # selection + model_loss, + training
    assert rows[("sft_random", "gsm8k")]["data_seconds"] == 1.0  # the pool is shared by every arm: not counted
    assert rows[("cft", "gsm8k")]["method"] == "CFT" and rows[("cft", "gsm8k")]["data_seconds"] == 40.0
    assert stage.build(str(run_dir)) == manifest  # nothing changed: skipped


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (make test installs Debian's)")
def test_the_page_renders_in_headless_chromium(run_dir, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    stage.build(str(run_dir))
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run"]  # fmt: skip
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=flags)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto((run_dir / "report" / "index.html").as_uri())
        images = page.evaluate("[...document.images].map(i => [i.closest('figure').id, i.complete, i.naturalWidth])")
        cells = page.evaluate("[...document.querySelectorAll('table td')].map(td => td.textContent)")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert [name for name, *_ in images] == list(stage.PLOTS)
    assert all(complete and width > 300 for _, complete, width in images)
    assert "base-tiny" in cells and "40.0" in cells  # the CFT arm's gsm8k accuracy
    from PIL import Image

    shot = np.asarray(Image.open(tmp_path / "report.png").convert("L"))
    assert shot.shape[0] > 2000 and shot.std() > 10  # a long page, and not blank
