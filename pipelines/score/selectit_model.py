"""One SelectIT model in a Ray Data actor pool: the rating distributions of every row and prompt.

The rating prompt of a row is the user turn
    "<rating prompt>\\nInstruction: <prompt>\\nResponse: <response>"
rendered with the model's chat template (generation prompt added) when it has one (or
`template: chat`), else as plain text followed by a newline; then the answer prefix ("The
answer is: "), after which the next token is the rating. The prompt is the row's single user
turn, or every turn before the last assistant turn as "Role: content" text; the response is
the last assistant turn (the study's convention). A rating prompt longer than `max_length`
keeps its head and its tail (what follows the response) and loses the response's end:
the row is `truncated`.

Sequences are sorted by length and left-padded per micro-batch, with position ids counted
from each sequence's first real token, so a batch gives what a batch of one gives; only the
last position's logits are computed (`logits_to_keep=1`) where the model takes it.
"""

from __future__ import annotations

import inspect
import time

import numpy as np
import pyarrow as pa

from pipelines.models import loading
from pipelines.score import parts, render, sampling, selectit
from pipelines.score.model_loss import micro_batches
from pipelines.score.spans import TemplateError

PROBS_TYPE = pa.list_(pa.list_(pa.float32(), 5))


def instruction_text(prompt_turns: render.Turns) -> str:
    if len(prompt_turns) == 1 and prompt_turns[0][0] == "user":
        return prompt_turns[0][1]
    return render.conversation(prompt_turns)


def rating_text(tokenizer, rating_prompt: str, instruction: str, response: str, chat: bool, prefix: str):
    """(the text the model reads, the character where the part after the response starts)."""
    body = f"{rating_prompt}\nInstruction: {instruction}\nResponse: {response}"
    if not chat:
        return f"{body}\n{prefix}", len(body)
    messages = [{"role": "user", "content": body}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    start = text.find(body)
    if start < 0:
        raise TemplateError("the chat template changed the rating prompt's text; use template: plain")
    return text + prefix, start + len(body)


def encode(tokenizer, text: str, tail_start: int, max_length: int, special: bool) -> tuple[list[int], bool]:
    """Token ids, cut in the middle (head + tail) to max_length; whether anything was cut."""
    ids = tokenizer(text, add_special_tokens=special)["input_ids"]
    if len(ids) <= max_length:
        return ids, False
    if not tokenizer.is_fast:
        raise ValueError("selectit: cutting a rating prompt to max_length needs a fast tokenizer (offsets)")
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=special)
    ids = encoded["input_ids"]
    tail = [t for t, (a, _) in zip(ids, encoded["offset_mapping"], strict=True) if a >= tail_start]
    keep = max_length - len(tail)
    if keep <= 0:
        raise ValueError(f"selectit: max_length {max_length} is shorter than the rating prompt's ending")
    return ids[:keep] + tail, True


class SelectitActor:
    """Model `index` of the scorer, loaded once; appends its columns to the batch."""

    def __init__(self, location: str, trust_remote_code: bool, index: int, settings: dict):
        device = loading.pick_device(settings["device"], settings["num_gpus"])
        loading.set_threads(settings["threads"], settings["num_cpus"])
        ref = loading.ModelRef(location, trust_remote_code)
        self.tokenizer, self.model = loading.load_causal_lm(ref, settings["dtype"], device)
        self.index, self.settings = index, settings
        template = settings["template"]
        if template == "chat" and not self.tokenizer.chat_template:
            raise TemplateError(f"{location}: template: chat, but the tokenizer has no chat template")
        self.chat = template == "chat" or (template == "auto" and bool(self.tokenizer.chat_template))
        self.digits = selectit.digit_ids(self.tokenizer)
        self.prompts = settings["prompts"]
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.tokenizer.eos_token_id or 0)
        self.n_parameters = sum(p.numel() for p in self.model.parameters())
        self.keeps_last = "logits_to_keep" in inspect.signature(self.model.forward).parameters

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.process_time()
        probs, mass, truncated = self.rate(batch["messages"].to_pylist(), batch["id"].to_pylist())
        m = self.index
        columns = {
            f"_probs_{m}": pa.array(probs, PROBS_TYPE),
            f"_mass_{m}": pa.array(mass, pa.list_(pa.float32())),
            f"_truncated_{m}": pa.array(truncated, pa.bool_()),
            f"_params_{m}": pa.array([self.n_parameters] * batch.num_rows, pa.int64()),
        }
        for name, column in columns.items():
            batch = batch.append_column(name, column)
        cpu = time.process_time() - started
        if parts.CPU_COLUMN not in batch.column_names:
            return parts.with_cpu(batch, cpu)
        position = batch.column_names.index(parts.CPU_COLUMN)
        added = np.asarray(batch[parts.CPU_COLUMN].to_numpy(zero_copy_only=False)) + cpu / max(1, batch.num_rows)
        return batch.set_column(position, parts.CPU_COLUMN, pa.array(added, pa.float64()))

    def sequences(self, turns: render.Turns) -> tuple[list[list[int]], bool] | None:
        """The rating prompts' token ids for one row (None without a response), and whether one was cut."""
        prompt, response = render.split_last_response(turns)
        if response is None:
            return None
        instruction = instruction_text(prompt)
        found, cut = [], False
        for rating_prompt in self.prompts:
            text, tail = rating_text(
                self.tokenizer, rating_prompt, instruction, response, self.chat, self.settings["answer_prefix"]
            )
            ids, was_cut = encode(self.tokenizer, text, tail, self.settings["max_length"], special=not self.chat)
            found.append(ids)
            cut |= was_cut
        return found, cut

    def rate(self, messages: list[list[dict]], ids: list[str]):
        """Per row: [prompt][rating] distributions, [prompt] digit mass, truncated (None: not rated)."""
        fraction, seed = self.settings["sample_fraction"], self.settings["sample_seed"]
        per_row = [
            self.sequences(render.turns_of(m)) if sampling.in_sample(i, fraction, seed) else None
            for m, i in zip(messages, ids, strict=True)
        ]
        flat = [ids for row in per_row if row is not None for ids in row[0]]
        distributions = iter(self.next_token_distributions(flat))
        probs, mass, truncated = [], [], []
        for row in per_row:
            if row is None:
                probs.append(None)
                mass.append(None)
                truncated.append(False)
                continue
            pairs = [selectit.distribution(next(distributions), self.digits) for _ in row[0]]
            probs.append([p.tolist() for p, _ in pairs])
            mass.append([q for _, q in pairs])
            truncated.append(row[1])
        return probs, mass, truncated

    def next_token_distributions(self, sequences: list[list[int]]) -> list[np.ndarray]:
        """Softmax (float32 logits) of the token after each sequence, in length-sorted left-padded batches."""
        import torch

        results: list[np.ndarray | None] = [None] * len(sequences)
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        device = next(self.model.parameters()).device
        lengths = [len(sequence) for sequence in sequences]
        for chunk in micro_batches(order, lengths, self.settings["batch_size"], self.settings["max_batch_tokens"]):
            width = max(len(sequences[i]) for i in chunk)
            input_ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                input_ids[row, width - len(sequences[i]) :] = torch.tensor(sequences[i])
                attention[row, width - len(sequences[i]) :] = 1
            positions = (attention.cumsum(1) - 1).clamp(min=0)
            extra = {"logits_to_keep": 1} if self.keeps_last else {}
            with torch.inference_mode():
                logits = self.model(
                    input_ids=input_ids.to(device),
                    attention_mask=attention.to(device),
                    position_ids=positions.to(device),
                    **extra,
                ).logits[:, -1]
                probabilities = torch.softmax(logits.float(), dim=-1).cpu().numpy()
            for row, i in enumerate(chunk):
                results[i] = probabilities[row]
        return results
