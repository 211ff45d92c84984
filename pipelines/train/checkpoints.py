"""Checkpoint folders: an HF folder (save_pretrained + tokenizer) plus `train_state/` to resume.

`train_state/state.json` holds the step, the metrics history up to it and the accounting;
`train_state/optimizer.pt` the optimizer and scheduler states. A LoRA checkpoint holds the
adapter (peft's save_pretrained) instead of full weights; `export` merges it into the base
model, so models/<ARM> is always a plain HF folder that any loader (the model_loss scorer,
vLLM, the evaluator) opens by path. Locations may be object-store URIs: `local_copy` fetches
a folder to local disk first, because transformers loads from local paths only.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from pipelines import storage

STATE_DIR = "train_state"
ADAPTER_CONFIG = "adapter_config.json"


def local_copy(location: str, cache_root: str | None = None) -> str:
    """A local folder with the files at `location` (itself when it is local already)."""
    if not storage.is_uri(location):
        return location
    import pyarrow.fs as pafs

    filesystem, path = storage.resolve(location)
    target = tempfile.mkdtemp(prefix="winnow-model-", dir=cache_root)
    pafs.copy_files(path, target, source_filesystem=filesystem, destination_filesystem=pafs.LocalFileSystem())
    return target


def write(folder: str, model, tokenizer, model_state, optimizer_state, scheduler_state, state: dict) -> None:
    """Fill `folder` (rank 0): weights or adapter, tokenizer, training state."""
    import torch

    model.save_pretrained(folder, state_dict=model_state)
    tokenizer.save_pretrained(folder)
    state_dir = Path(folder) / STATE_DIR
    state_dir.mkdir(exist_ok=True)
    torch.save({"optimizer": optimizer_state, "scheduler": scheduler_state}, state_dir / "optimizer.pt")
    (state_dir / "state.json").write_text(json.dumps(state, default=float))


def read_state(folder: str) -> dict:
    return json.loads((Path(folder) / STATE_DIR / "state.json").read_text())


class CheckpointError(ValueError):
    """A checkpoint file that is not plain tensors and containers (it could run code when read)."""


def read_optimizer(folder: str) -> dict:
    """The optimizer and scheduler states, read with torch's weights-only unpickler.

    A file in a run folder is data: unpickling it in full would run whatever code it names,
    so only tensors and plain containers are read (the states `write` saves are nothing else)."""
    import pickle

    import torch

    path = Path(folder) / STATE_DIR / "optimizer.pt"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: holds more than tensors and plain containers; refusing to unpickle it ({_refused(error)})"
        ) from None


def _refused(error: Exception) -> str:
    """The line of torch's long message that names what was refused (e.g. "GLOBAL posix.system")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in lines if "GLOBAL" in line.upper()), lines[0] if lines else "not weights-only")


def is_adapter(folder: str) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def export(folder: str, destination: str, base_location: str, trust_remote_code: bool) -> None:
    """models/<ARM>: the checkpoint as a plain HF folder (LoRA merged), without training state."""
    if not storage.is_uri(destination):
        _write_export(folder, destination, base_location, trust_remote_code)
        return
    import pyarrow.fs as pafs

    staging = tempfile.mkdtemp(prefix="winnow-export-")
    try:  # a failed merge or upload must not leave a model's copy in the temporary folder
        _write_export(folder, staging, base_location, trust_remote_code)
        filesystem, path = storage.resolve(destination)
        pafs.copy_files(staging, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=filesystem)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_export(folder: str, destination: str, base_location: str, trust_remote_code: bool) -> None:
    if is_adapter(folder):
        merged(folder, base_location, trust_remote_code).save_pretrained(destination)
        _copy_tokenizer(folder, destination)
    else:
        shutil.copytree(folder, destination, ignore=shutil.ignore_patterns(STATE_DIR), dirs_exist_ok=True)


def merged(folder: str, base_location: str, trust_remote_code: bool):
    """The base model with the checkpoint's LoRA adapter merged into its weights."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(local_copy(base_location), trust_remote_code=trust_remote_code)
    return PeftModel.from_pretrained(base, folder).merge_and_unload()


def _copy_tokenizer(source: str, destination: str) -> None:
    for path in Path(source).iterdir():
        if path.is_file() and ("token" in path.name or path.name.endswith((".jinja", ".model", "vocab.json", ".txt"))):
            shutil.copy2(path, Path(destination) / path.name)


@contextmanager
def model_folder(checkpoint, base_location: str | None = None, trust_remote_code: bool = False):
    """A loadable HF folder for a Ray Train checkpoint (what a validation function opens).

    A LoRA checkpoint is merged into `base_location` into a temporary folder."""
    with checkpoint.as_directory() as folder:
        if not is_adapter(folder):
            yield folder
            return
        if base_location is None:
            raise ValueError(f"{folder} holds a LoRA adapter: give the base model's location")
        with tempfile.TemporaryDirectory(prefix="winnow-merged-") as target:
            export(folder, target, base_location, trust_remote_code)
            yield target
