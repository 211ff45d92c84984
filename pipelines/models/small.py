"""The small-model kit: a tiny Qwen2-architecture checkpoint built from a pool's own text.

A byte-level BPE tokenizer is trained on the texts with Qwen2's exact pipeline (NFC, Qwen's
split regex, byte-level BPE) and ChatML special tokens, so `AutoTokenizer` loads it back as
a `Qwen2Tokenizer` that encodes identically; the model is a randomly initialised (seeded)
`Qwen2ForCausalLM`. Both are saved with `save_pretrained` into one folder and are loaded
back by path exactly as a downloaded checkpoint is. Heavy imports stay inside functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class SmallModelSpec:
    vocab_size: int = 4096
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 2  # head_dim 64: a size every attention backend supports
    num_key_value_heads: int = 1
    max_position_embeddings: int = 2048
    seed: int = 0


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A Qwen2-style byte-level BPE tokenizer trained on `texts`, as a transformers tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import Qwen2Tokenizer

    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    return Qwen2Tokenizer(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        chat_template=CHATML,
    )


def build(texts: Iterable[str], folder: str | Path, spec: SmallModelSpec = SmallModelSpec()) -> Path:
    """Train the tokenizer, initialise the model, save both into `folder`; returns it."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()  # the stage prints its own line; no "Writing model shards" bar
    folder = Path(folder)
    tokenizer = train_tokenizer(texts, spec.vocab_size)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(spec.seed)
    model = Qwen2ForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_sentence_encoder(
    folder: str | Path, tokenizer_from: str, hidden_size: int = 96, dim: int = 384, seed: int = 0
) -> Path:
    """A tiny random sentence-transformers encoder (1-layer BERT, mean pooling, a dense layer
    to `dim`), with the tokenizer of an existing checkpoint: fast stand-in embeddings for
    benchmarks and tests that measure the pipeline rather than the embedding quality."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = Path(folder)
    encoder_dir = folder / "encoder"
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=512,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(encoder_dir)
    tokenizer.save_pretrained(encoder_dir)
    transformer = Transformer(str(encoder_dir), max_seq_length=128)
    modules = [
        transformer,
        Pooling(hidden_size, "mean"),
        Dense(hidden_size, dim, activation_function=torch.nn.Identity()),
    ]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    return folder
