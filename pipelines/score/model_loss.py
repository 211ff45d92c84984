"""Model loss: per-example mean token NLL of the response, given its prompt and alone; IFD.

- `loss_given_prompt`: mean NLL of the response tokens after the full prompt (the
  cross-entropy score); `loss_alone`: after only `response_marker`; `ifd` = their ratio.
- Logits at position t predict token t+1 (shifted), and the loss is taken over the
  response's token positions (found by offsets, see `spans`), never by token id.
- A sequence longer than `max_length` is cut; when that cuts response tokens the row is
  `truncated`: its losses cover only what fits and its `ifd` is null (the IFD method gives
  truncated rows no score). A first token with nothing before it is not scored.
- Sequences are sorted by length and left-padded per micro-batch (length bucketing), with
  explicit position ids; both sequences of a row are scored in the same passes.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass

import pyarrow as pa

import schemas
from pipelines.models import loading
from pipelines.score import alpaca, parts, render, sampling, spans


@dataclass(frozen=True)
class Scored:
    """A sequence cut to max_length and the positions whose tokens are scored."""

    ids: list[int]
    first: int
    stop: int


def scored_positions(span: spans.Span, max_length: int) -> Scored:
    return Scored(span.ids[:max_length], max(span.start, 1), min(span.stop, max_length))


def mean_nlls(
    model, sequences: list[Scored], batch_size: int, max_batch_tokens: int, pad_id: int, apart=None
) -> list[float | None]:
    """Mean NLL over each sequence's scored positions, in length-sorted padded micro-batches.
    `apart`: the model's (body, head) from `head_apart`, so logits are computed for the
    scored positions only; None: the model's own logits, for the last columns."""
    results: list[float | None] = [None] * len(sequences)
    order = sorted((i for i, s in enumerate(sequences) if s.first < s.stop), key=lambda i: len(sequences[i].ids))
    keeps_positions = "logits_to_keep" in inspect.signature(model.forward).parameters
    head = apart[1] if apart else None
    for chunk in micro_batches(order, [len(s.ids) for s in sequences], batch_size, max_batch_tokens):
        batch = [sequences[i] for i in chunk]
        vectors, first_columns = _forward(model, batch, pad_id, keeps_positions, apart[0] if apart else None)
        for index, loss in zip(chunk, _batch_means(vectors, batch, first_columns, head), strict=True):
            results[index] = loss
    return results


def head_apart(model):
    """(body, head) when the model's logits are its output head applied to its base model's
    last hidden state, checked on a short input; else None (a model that scales or caps its
    logits after the head keeps its own forward). Apart, a micro-batch's logits are computed
    only at scored positions, a chunk at a time: the whole logits window (batch x columns x
    vocabulary floats, 0.8 GB for 8 x 512 x 49k) is never held, and prompt and padding
    positions cost no output head."""
    import torch

    head, body = model.get_output_embeddings(), model.base_model
    if head is None or body is model:
        return None
    ids = torch.arange(1, 9, device=next(model.parameters()).device).unsqueeze(0)
    with torch.inference_mode():
        whole = model(input_ids=ids, use_cache=False).logits
        hidden = body(input_ids=ids, use_cache=False).last_hidden_state
        logits = head(hidden)
    if logits.shape != whole.shape or not torch.allclose(logits.float(), whole.float(), rtol=1e-4, atol=1e-4):
        return None
    return body, head


CE_POSITIONS = 512  # scored positions a cross-entropy call: bounds its copies of the logits


def _batch_means(vectors, batch: list[Scored], first_columns: list[int], head=None) -> list[float]:
    """Each row's mean NLL over its scored positions, with one gather and one cross-entropy
    a chunk of positions for the whole micro-batch (a row's vectors for its scored tokens are
    consecutive columns, the first at `first_columns[row]`). `vectors`: logits, or hidden
    states that `head` turns into logits a chunk at a time."""
    import torch
    import torch.nn.functional as F

    rows, columns, targets, counts = [], [], [], []
    for row, (s, first) in enumerate(zip(batch, first_columns, strict=True)):
        count = s.stop - s.first
        rows += [row] * count
        columns += range(first, first + count)
        targets += s.ids[s.first : s.stop]
        counts.append(count)
    device = vectors.device
    row_index, column_index, target = (torch_tensor(x, device) for x in (rows, columns, targets))
    sums = torch.zeros(len(batch), dtype=torch.float64, device=device)
    # a chunk of positions at a time: the gathered logits and cross-entropy's log-softmax are
    # each positions x vocabulary floats (~0.8 GB for 4,096 positions of a 49k vocabulary)
    with torch.inference_mode():
        for start in range(0, len(rows), CE_POSITIONS):
            part = slice(start, start + CE_POSITIONS)
            picked = vectors[row_index[part], column_index[part]]
            logits = (picked if head is None else head(picked)).float()
            nll = F.cross_entropy(logits, target[part], reduction="none").double()
            sums.index_add_(0, row_index[part], nll)
    return (sums / torch.tensor(counts, dtype=torch.float64, device=device)).tolist()


def micro_batches(order: list[int], lengths: list[int], batch_size: int, max_batch_tokens: int):
    """Consecutive runs of the length-sorted order: at most `batch_size` sequences and
    `max_batch_tokens` padded tokens (the last sequence of a run is its longest)."""
    start = 0
    while start < len(order):
        end = start + 1
        while (
            end < len(order)
            and end - start < batch_size
            and lengths[order[end]] * (end - start + 1) <= max_batch_tokens
        ):
            end += 1
        yield order[start:end]
        start = end


def _forward(model, batch: list[Scored], pad_id: int, keeps_positions: bool, body=None):
    """Logits (or, with `body`, the last hidden states) for a left-padded batch, and each
    row's column predicting its first scored token.

    Left padding lines every sequence's end up, and a response sits at (or next to) the end
    of its sequence: models that take `logits_to_keep` then compute logits for only the last
    few columns (the output head is most of a small model's cost). Position ids are given,
    so a padded row sees the same positions as it would alone. No KV cache: nothing is
    generated after the pass.
    """
    import torch

    width = max(len(s.ids) for s in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    positions = torch.zeros((len(batch), width), dtype=torch.long)
    for row, s in enumerate(batch):
        pad = width - len(s.ids)
        input_ids[row, pad:] = torch.tensor(s.ids)
        attention[row, pad:] = 1
        positions[row, pad:] = torch.arange(len(s.ids))
    # logits at t-1 predict token t: a row needs its columns from (first - 1) to the end
    kept = max(len(s.ids) - s.first + 1 for s in batch) if keeps_positions and body is None else width
    device = next(model.parameters()).device
    extra = {"logits_to_keep": kept} if keeps_positions and body is None else {}
    inputs = {"input_ids": input_ids, "attention_mask": attention, "position_ids": positions}
    with torch.inference_mode():
        output = (body or model)(**{k: v.to(device) for k, v in inputs.items()}, use_cache=False, **extra)
    vectors = output.last_hidden_state if body is not None else output.logits
    return vectors, [kept - (len(s.ids) - s.first + 1) for s in batch]


def torch_tensor(values: list[int], device):
    import torch

    return torch.tensor(values, dtype=torch.long, device=device)


class ModelLossActor:
    """One causal LM an actor, loaded once; `__call__` scores a batch of pool rows."""

    def __init__(self, location: str, trust_remote_code: bool, settings: dict):
        self.settings = settings
        device = loading.pick_device(settings["device"], settings["num_gpus"])
        loading.set_threads(settings["threads"], settings["num_cpus"])
        ref = loading.ModelRef(location, trust_remote_code)
        if settings.get("engine", "transformers") == "vllm":
            from transformers import AutoTokenizer

            from pipelines.score.vllm_losses import VllmLosses

            self.tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
            self.model, self.vllm = None, VllmLosses(location, trust_remote_code, settings)
        else:
            self.tokenizer, self.model = loading.load_causal_lm(ref, settings["dtype"], device)
            self.vllm, self.apart = None, head_apart(self.model)
        if not self.tokenizer.is_fast:
            raise ValueError(f"{location}: model_loss needs a fast tokenizer (offsets locate the response)")
        template = settings["template"]
        if template == "auto":
            template = "chat" if self.tokenizer.chat_template else "plain"
        self.template = template  # chat | plain | alpaca (the IFD reference's prompt, from `meta`)
        self.use_chat_template = template == "chat"
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.tokenizer.eos_token_id or 0)

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.process_time()
        metas = batch["meta"].to_pylist() if self.template == "alpaca" else None
        rows = self.score(batch["messages"].to_pylist(), batch["id"].to_pylist(), metas)
        table = pa.Table.from_pylist(rows, schema=schemas.SCHEMAS["scores/model_loss"])
        return parts.with_cpu(table, time.process_time() - started)

    def score(self, messages: list[list[dict]], ids: list[str], metas: list[str | None] | None = None) -> list[dict]:
        """Texts first, then one tokenizer call for all full texts and one for all responses
        alone; both sequences of a row go through the same length-sorted forward passes.
        `metas`: the rows' meta JSON, which `template: alpaca` renders from."""
        s, tokenizer = self.settings, self.tokenizer
        rows, scored, given_texts, alone_texts = [], [], [], []
        turns_of_rows = map(render.turns_of, messages)
        for example_id, turns, meta in zip(ids, turns_of_rows, metas or [None] * len(ids), strict=True):
            located = self._located(example_id, turns, meta)
            if located is None:  # a prompt with no response: nothing to score
                n_prompt = self._prompt_length(example_id, turns, meta)
                rows.append(_row(example_id, n_prompt, 0, None, None, False))
                continue
            scored.append(len(rows))
            rows.append(_row(example_id, 0, 0, None, None, False))
            given_texts.append(located)
            alone_texts.append(spans.text_alone(turns[-1][1], s["response_marker"]))
        count = s["response_tokens"]
        given = spans.token_spans(tokenizer, given_texts, special=not self.use_chat_template, count=count)
        alone = spans.token_spans(tokenizer, alone_texts, special=True, count=count)
        sequences, sampled = [], []
        for index, g, a in zip(scored, given, alone, strict=True):
            truncated = g.stop > s["max_length"] or a.stop > s["max_length"]
            rows[index].update(n_prompt_tokens=g.start, n_response_tokens=g.stop - g.start, truncated=truncated)
            if sampling.in_sample(rows[index]["id"], s["sample_fraction"], s["sample_seed"]):
                sampled.append(index)  # out of the sample: token counts only, null losses
                sequences += [scored_positions(g, s["max_length"]), scored_positions(a, s["max_length"])]
        if self.vllm is not None:
            losses = self.vllm.mean_nlls(sequences)
        else:
            losses = mean_nlls(self.model, sequences, s["batch_size"], s["max_batch_tokens"], self.pad_id, self.apart)
        for pair, index in enumerate(sampled):  # a row's two sequences are consecutive
            row = rows[index]
            row.update(loss_given_prompt=losses[2 * pair], loss_alone=losses[2 * pair + 1])
            row["ifd"] = _ifd(row)
        return rows

    def _located(self, example_id: str, turns: render.Turns, meta: str | None) -> spans.Located | None:
        if self.template != "alpaca":
            return spans.text_with_prompt(self.tokenizer, turns, self.use_chat_template)
        try:
            return alpaca.text_with_prompt(turns, meta)
        except spans.TemplateError as error:
            raise alpaca.row_error(error, example_id, meta) from None

    def _prompt_length(self, example_id: str, turns: render.Turns, meta: str | None) -> int:
        if self.template != "alpaca":
            return spans.prompt_length(self.tokenizer, turns, self.use_chat_template)
        try:
            return len(self.tokenizer(alpaca.prompt_text(turns, meta))["input_ids"])
        except spans.TemplateError as error:
            raise alpaca.row_error(error, example_id, meta) from None


def _row(example_id, n_prompt, n_response, given, alone, truncated) -> dict:
    return {
        "id": example_id,
        "n_prompt_tokens": n_prompt,
        "n_response_tokens": n_response,
        "loss_given_prompt": given,
        "loss_alone": alone,
        "ifd": None,
        "truncated": truncated,
    }


def _ifd(row: dict) -> float | None:
    given, alone = row["loss_given_prompt"], row["loss_alone"]
    if row["truncated"] or given is None or not alone:
        return None
    return given / alone
