"""Generation throughput: the `vllm` engine in a Ray actor pool against `vllm.LLM.generate`
called directly, and the `openai` engine against a local `vllm serve` at 1, 8 and 32 in flight.

- model: the small-model kit's Qwen2 (hidden 256, 4 layers, head_dim 64), float32, eager,
  vLLM's CPU build; one torch thread a side (WINNOW_BENCH_THREADS): this model's decode
  steps are too small to split over threads, and one thread is steadier on a shared box;
- prompts: generated math questions in chat form; temperature 0.8, top_p 0.95, a seed a
  completion (the same on both sides, so both generate exactly the same tokens);
- direct: a fresh process, at the niceness Ray gives its workers (15), imports vLLM, builds
  the engine with the actor's settings, calls `LLM.generate` on the same token ids and
  sampling, writes the outputs; timed from start to exit. Twice: one call with every
  prompt, and one call per `batch_size` batch; the ratio is against the faster;
- Ray: `pipelines.generate.engine.generate` with one actor, Ray and Ray Data already started
  (as in a pipeline run): reading the requests, the actor's start (worker process, vLLM
  import, engine build), generation, writing the parts;
- sides take turns, three rounds, the order reversed every other round; the best run of
  each counts (a disturbed run is only ever slower). CPU seconds of each side's processes
  (Ray: the driver and everything below it) and the load average after each run are
  recorded: on a shared machine CPU seconds move less than wall time;
- openai: the same model and threads behind `vllm serve`, through the engine's async
  client at 1, 8 and 32 requests in flight.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from bench.common import machine, save

SPEC = {"vocab_size": 2048, "hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip
MAX_MODEL_LEN = 512
THREADS = int(os.environ.get("WINNOW_BENCH_THREADS", "1"))
DIRECT = """
import json, sys, time
started = time.perf_counter()
def main():
    import os
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    import torch
    torch.set_num_threads({threads})
    import pyarrow as pa, pyarrow.parquet as pq
    from vllm import LLM, SamplingParams
    job = json.load(open(sys.argv[1]))
    llm = LLM(model=job["model"], dtype="float32", max_model_len={max_len}, gpu_memory_utilization=0.5,
              enforce_eager=True, distributed_executor_backend="uni", disable_log_stats=True,
              enable_chunked_prefill=False)
    loaded = time.perf_counter()
    sampling = dict(n=1, temperature=0.8, top_p=0.95, max_tokens=job["max_tokens"])
    params = [SamplingParams(**sampling, seed=seed) for seed in job["seeds"]]
    prompts = [{{"prompt_token_ids": ids}} for ids in job["prompts"]]
    step = job["batch"] or len(prompts)
    outputs = []
    for start in range(0, len(prompts), step):
        outputs += llm.generate(prompts[start : start + step], params[start : start + step], use_tqdm=False)
    done = time.perf_counter()
    texts = [o.outputs[0].text for o in outputs]
    pq.write_table(pa.table({{"output": texts}}), job["out"])
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    print(json.dumps({{"start_s": loaded - started, "generate_s": done - loaded, "tokens": tokens}}))
if __name__ == "__main__":
    main()
"""


def build_model(work: Path) -> str:
    from pipelines.models import small

    texts = [f"{row.question} {row.answer}" for row in _questions(4000, seed=5)]
    return str(small.build(texts, work / "model", small.SmallModelSpec(**SPEC)))


def _questions(rows: int, seed: int):
    from pipelines.ingest import mathematics

    settings = {"modules": mathematics.DEFAULT_MODULES, "difficulty": "any", "split": "train", "heldout_fraction": 0.05}
    return list(mathematics.generate(0, rows, seed=seed, **settings))


def requests(count: int) -> pa.Table:
    import schemas.generate

    rows = [{"request_id": f"q{i}", "messages": [{"role": "user", "content": row.question}]}
            for i, row in enumerate(_questions(count, seed=9))]  # fmt: skip
    return pa.Table.from_pylist(rows, schema=schemas.generate.REQUESTS)


def vllm_side(work: Path, model: str, table: pa.Table, max_tokens: int, rounds: int) -> dict:
    """Ray actor pool and the direct baselines, in turn, `rounds` times; the best of each
    (the machine is shared: the fastest round is the one least disturbed)."""
    import ray.data

    from pipelines.config import RayConfig
    from pipelines.generate import engine as engines
    from pipelines.generate.settings import Sampling, VllmEngineConfig
    from pipelines.ray_runtime import ensure_ray

    ensure_ray(RayConfig(num_cpus=THREADS + 1))  # the actor's CPUs plus room for reads and writes
    ray.data.range(4).map_batches(lambda batch: batch).take_all()  # Ray Data's first run starts its helpers (~4 s)
    sampling = Sampling(temperature=0.8, top_p=0.95, max_tokens=max_tokens, seed=0)
    engine = VllmEngineConfig(kind="vllm", model=model, dtype="float32", max_model_len=MAX_MODEL_LEN,
                              cpu_kv_cache_gib=2, num_cpus=THREADS, threads=THREADS)  # fmt: skip
    job = {**direct_job(work, model, table, max_tokens), "niceness": worker_niceness()}
    found = {"prompts": table.num_rows, "batch_size": engine.batch_size, "threads": THREADS, "rounds": rounds,
             "niceness": job["niceness"], "ray_seconds": [], "ray_cpu_seconds": [], "ray_load_1min": [],
             "direct_one_call": [], "direct_batched": []}  # fmt: skip
    expected = None
    for round_number in range(rounds):
        sides = ["ray", "direct_one_call", "direct_batched"]
        for side in sides if round_number % 2 == 0 else reversed(sides):  # alternate who goes first
            if side == "ray":
                out_dir = str(work / f"ray-out-{round_number}")
                started = time.perf_counter()
                with TreeCpu() as cpu:
                    summary = engines.generate(engine, table, sampling, out_dir)
                found["ray_seconds"].append(time.perf_counter() - started)
                found["ray_cpu_seconds"].append(cpu.seconds)
                found["ray_load_1min"].append(os.getloadavg()[0])  # other work on the machine shows here
                found["output_tokens"] = summary["output_tokens"]
                outputs = engines.read_results(out_dir, table)
                ours = dict(zip(outputs["request_id"].to_pylist(), outputs["output"].to_pylist(), strict=True))
                expected = [ours[r] for r in table["request_id"].to_pylist()]
            else:
                found[side].append(direct(work, {**job, "batch": engine.batch_size if side == "direct_batched" else 0}))
    for side in ("direct_one_call", "direct_batched"):  # both sides generated exactly the same text
        for run in found[side]:
            run["identical_outputs"] = run.pop("outputs") == expected
    best = {name: min(found[name], key=lambda run: run["seconds"]) for name in ("direct_one_call", "direct_batched")}
    found["best"] = {"ray_seconds": min(found["ray_seconds"]), **best}
    faster = min(run["seconds"] for run in best.values())
    found["ratio"] = faster / min(found["ray_seconds"])  # same tokens on both sides: a ratio of tokens/s
    direct_cpu = min(run["cpu_seconds"] for name in ("direct_one_call", "direct_batched") for run in found[name])
    found["cpu_ratio"] = direct_cpu / min(found["ray_cpu_seconds"])  # tokens per CPU-second, Ray over direct
    return found


def direct_job(work: Path, model: str, table: pa.Table, max_tokens: int) -> dict:
    from transformers import AutoTokenizer

    from pipelines.generate.rows import completion_seed

    tokenizer = AutoTokenizer.from_pretrained(model)
    messages = table["messages"].to_pylist()
    prompts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
    (work / "direct.py").write_text(DIRECT.format(threads=THREADS, max_len=MAX_MODEL_LEN))
    return {
        "model": model,
        "max_tokens": max_tokens,
        "prompts": [tokenizer.encode(p, add_special_tokens=False) for p in prompts],
        "seeds": [completion_seed(0, r, 0) for r in table["request_id"].to_pylist()],
        "out": str(work / "direct.parquet"),
    }


def direct(work: Path, job: dict) -> dict:
    """`LLM.generate` in a fresh process, timed from its start to its exit."""
    import pyarrow.parquet as pq

    (work / "job.json").write_text(json.dumps(job))
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "VLLM_CPU_KVCACHE_SPACE": "2"}
    started, cpu = time.perf_counter(), children_cpu_seconds()
    done = subprocess.run([sys.executable, str(work / "direct.py"), str(work / "job.json")], env=env,
                          capture_output=True, text=True, check=True,
                          preexec_fn=lambda: os.nice(job["niceness"]))  # fmt: skip
    seconds, cpu = time.perf_counter() - started, children_cpu_seconds() - cpu
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {"seconds": seconds, "cpu_seconds": cpu, "start_seconds": report["start_s"],
            "generate_seconds": report["generate_s"], "output_tokens": report["tokens"],
            "load_1min": os.getloadavg()[0], "outputs": pq.read_table(job["out"])["output"].to_pylist()}  # fmt: skip


def worker_niceness() -> int:
    """The niceness Ray gives its workers (15 unless configured), for the direct runs: the
    ratio is to measure the Ray pipeline, not the priority on a shared machine."""
    import ray

    @ray.remote(num_cpus=0)
    def niceness() -> int:
        return os.nice(0)

    return ray.get(niceness.remote())


def children_cpu_seconds() -> float:
    """CPU seconds of this process's children that have exited (the direct runs)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class TreeCpu:
    """CPU seconds of this process and its descendants (raylet, workers, the actor) over a
    block, sampled every 0.2 s: a worker that ends is counted up to its last sample."""

    def __init__(self, every_seconds: float = 0.2):
        import threading

        self.every, self.stop = every_seconds, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.start, self.last = {}, {}

    def __enter__(self) -> TreeCpu:
        self.start = self._sample()
        self.last = dict(self.start)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.last.update(self._sample())
        self.seconds = sum(cpu - self.start.get(key, 0.0) for key, cpu in self.last.items())

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            self.last.update(self._sample())

    @staticmethod
    def _sample() -> dict[tuple[int, float], float]:
        """(pid, start time) -> user + system seconds, for the living tree."""
        import psutil

        root, found = psutil.Process(), {}
        for process in [root, *root.children(recursive=True)]:
            try:
                with process.oneshot():
                    times, key = process.cpu_times(), (process.pid, process.create_time())
            except psutil.Error:
                continue
            found[key] = times.user + times.system
        return found


def openai_side(work: Path, model: str, table: pa.Table, max_tokens: int) -> dict:
    from pipelines.generate import engine as engines
    from pipelines.generate.local_server import LocalServer
    from pipelines.generate.settings import OpenAIEngineConfig, Sampling

    sampling = Sampling(temperature=0.8, top_p=0.95, max_tokens=max_tokens, seed=0)
    found = {}
    with LocalServer(model, served_name="bench", max_model_len=MAX_MODEL_LEN, threads=THREADS, kv_cache_gib=2,
                     log_path=work / "server.log") as server:  # fmt: skip
        for in_flight in (1, 8, 32):
            engine = OpenAIEngineConfig(kind="openai", base_url=server.base_url, model="bench",
                                        api_key_env=server.api_key_env, max_in_flight=in_flight,
                                        timeout_s=600)  # fmt: skip
            started = time.perf_counter()
            summary = engines.generate(engine, table, sampling, str(work / f"openai-{in_flight}"))
            seconds = time.perf_counter() - started
            assert summary["ok"] == table.num_rows, summary
            found[in_flight] = {"seconds": seconds, "output_tokens": summary["output_tokens"],
                                "tokens_per_second": summary["output_tokens"] / seconds,
                                "load_1min": os.getloadavg()[0]}  # fmt: skip
    return found


def rate(run: dict) -> str:
    return (f"{run['output_tokens'] / run['seconds']:,.0f} tokens/s ({run['seconds']:.1f} s: start "
            f"{run['start_seconds']:.1f} + generate {run['generate_seconds']:.1f})")  # fmt: skip


def main(quick: bool = False) -> None:
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout`: stop the server, remove the files
    prompts, max_tokens, served, rounds = (128, 64, 64, 1) if quick else (512, 128, 128, 3)
    print(f"generation benchmark on {machine()}, {THREADS} torch thread(s) a side")
    with tempfile.TemporaryDirectory(prefix="winnow-bench-") as tmp:
        work = Path(tmp)
        model = build_model(work)
        results = {"vllm": vllm_side(work, model, requests(prompts), max_tokens, rounds)}
        r, sides = results["vllm"], ("direct_one_call", "direct_batched")
        one, batched, ray_seconds = r["best"]["direct_one_call"], r["best"]["direct_batched"], r["best"]["ray_seconds"]
        loads = r["ray_load_1min"] + [run["load_1min"] for name in sides for run in r[name]]
        print(
            f"  vllm engine, {r['prompts']:,} prompts, {r['output_tokens']:,} tokens, best of {rounds}: Ray actor pool "
            f"{r['output_tokens'] / ray_seconds:,.0f} tokens/s ({ray_seconds:.1f} s); direct LLM.generate, one call "
            f"{rate(one)}, in batches of {r['batch_size']} {rate(batched)}: x{r['ratio']:.2f} against the faster "
            f"(target >= 0.9); identical outputs: {all(run['identical_outputs'] for n in sides for run in r[n])}\n"
            f"  CPU seconds of each side's processes: Ray {min(r['ray_cpu_seconds']):.1f}, direct "
            f"{min(run['cpu_seconds'] for n in sides for run in r[n]):.1f}: x{r['cpu_ratio']:.2f}; 1-minute load "
            f"average after the runs {min(loads):.1f}-{max(loads):.1f} (over the CPU count: other work was running)"
        )
        results["openai"] = found = openai_side(work, model, requests(served), max_tokens)
        base = found[1]["tokens_per_second"]
        line = ", ".join(f"{k} in flight {v['tokens_per_second']:,.0f} tokens/s (x{v['tokens_per_second'] / base:.2f})"
                         for k, v in found.items())  # fmt: skip
        loads = ", ".join(f"{v['load_1min']:.1f}" for v in found.values())
        print(f"  openai engine against vllm serve, {served} prompts: {line}; load averages {loads}")
    print(f"  results: {save('generation', results)}")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
