"""Write a real GGUF file from a small Qwen2 checkpoint folder, for the GGUF loading tests.

The `gguf` package (llama.cpp's own Python writer) writes the file; tensor names come from its
own HF -> GGUF name map, so the file is laid out as llama.cpp's converter lays out a Qwen2
model (float32 tensors, byte-level BPE tokenizer with its merges and chat template).
"""

from __future__ import annotations

import json
from pathlib import Path


def write_qwen2_gguf(checkpoint: Path, target: Path) -> Path:
    import gguf
    from safetensors.torch import load_file

    config = json.loads((checkpoint / "config.json").read_text())
    tokenizer = json.loads((checkpoint / "tokenizer.json").read_text())
    template = (checkpoint / "chat_template.jinja").read_text()
    writer = gguf.GGUFWriter(str(target), "qwen2")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_freq_base(config.get("rope_theta") or config["rope_parameters"]["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _add_tokenizer(writer, tokenizer, template, config)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, config["num_hidden_layers"])
    for name, tensor in load_file(str(checkpoint / "model.safetensors")).items():
        writer.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), tensor.float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


def _add_tokenizer(writer, tokenizer: dict, template: str, config: dict) -> None:
    import gguf

    vocab = dict(tokenizer["model"]["vocab"])
    specials = {token["content"]: token["id"] for token in tokenizer["added_tokens"]}
    vocab.update(specials)
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    types = [gguf.TokenType.CONTROL if token in specials else gguf.TokenType.NORMAL for token in tokens]
    merges = [" ".join(merge) if isinstance(merge, list) else merge for merge in tokenizer["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(config["eos_token_id"])
    writer.add_pad_token_id(config["pad_token_id"])
    writer.add_chat_template(template)
