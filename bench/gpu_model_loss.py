"""GPU check of model_loss: the transformers path on CUDA (bf16 by `dtype: auto`, and fp32) against
the CPU fp32 path, on a tiny Qwen2 built in place. Needs a CUDA machine: `python bench/gpu_model_loss.py`
(run 2026-12-04 on an H200: fp32 within 2.5e-7 of the CPU, bf16 within 1.6e-3 nats; RESULTS.md)."""

import json
import os
import sys
import time

sys.path.insert(0, os.getcwd())
import torch

from pipelines.models import small
from pipelines.score import model_loss

texts = [f"Question {i}: what is {i} plus {3 * i}? The answer is {4 * i}." for i in range(400)]
folder = small.build(
    texts,
    "/tmp/tiny",
    small.SmallModelSpec(
        vocab_size=600, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2
    ),
)
rows = [
    [
        {"role": "user", "content": f"What is {i} plus {3 * i}?" + " Think." * (i % 40)},
        {"role": "assistant", "content": f"{i} + {3 * i} = {4 * i}." * (1 + i % 5)},
    ]
    for i in range(512)
]
ids = [str(i) for i in range(len(rows))]
base = {
    "device": "cpu",
    "num_gpus": 0,
    "num_cpus": 4,
    "threads": 4,
    "dtype": "float32",
    "template": "auto",
    "response_marker": "Assistant: ",
    "max_length": 256,
    "batch_size": 32,
    "max_batch_tokens": 8192,
    "sample_fraction": 1.0,
    "sample_seed": 0,
    "response_tokens": "overlap",
}
out = {"cuda": torch.cuda.is_available(), "device_name": torch.cuda.get_device_name(0)}
timings, results = {}, {}
for name, settings in {
    "cpu_fp32": base,
    "cuda_fp32": {**base, "device": "auto", "num_gpus": 1, "dtype": "float32"},
    "cuda_auto": {**base, "device": "auto", "num_gpus": 1, "dtype": "auto"},
}.items():
    actor = model_loss.ModelLossActor(str(folder), False, settings)
    out[f"{name}_param_dtype"] = str(next(actor.model.parameters()).dtype)
    out[f"{name}_device"] = str(next(actor.model.parameters()).device)
    started = time.perf_counter()
    results[name] = actor.score(rows, ids)
    timings[name] = round(time.perf_counter() - started, 3)
out["seconds"] = timings
for name in ("cuda_fp32", "cuda_auto"):
    for key in ("loss_given_prompt", "loss_alone", "ifd"):
        gaps = [
            abs(a[key] - b[key])
            for a, b in zip(results["cpu_fp32"], results[name], strict=True)
            if a[key] is not None and b[key] is not None
        ]
        nulls_equal = all(
            (a[key] is None) == (b[key] is None) for a, b in zip(results["cpu_fp32"], results[name], strict=True)
        )
        out[f"{name}_{key}"] = {"max_abs_gap": max(gaps), "n": len(gaps), "nulls_equal": nulls_equal}
    out[f"{name}_counts_equal"] = all(
        (a["n_prompt_tokens"], a["n_response_tokens"], a["truncated"])
        == (b["n_prompt_tokens"], b["n_response_tokens"], b["truncated"])
        for a, b in zip(results["cpu_fp32"], results[name], strict=True)
    )
print(json.dumps(out, indent=1))
with open(os.path.join(os.environ.get("OUT", "/tmp"), "gpu_model_loss.json"), "w") as handle:
    json.dump(out, handle, indent=1)
