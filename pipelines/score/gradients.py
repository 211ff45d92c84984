"""LESS gradient features: one example's LoRA gradient at each warm-up checkpoint, projected.

- The model is the base model with the warm-up's LoRA adapter, in eval mode (no dropout, so a
  feature is a function of the example alone); each checkpoint's adapter weights are loaded
  in turn into the same model. Only the LoRA parameters take gradients, in the order of
  `named_parameters()`, which fixes the rows of the projection.
- The loss is the example's mean token NLL over its assistant turns, masked exactly as the
  warm-up trained on it (pipelines/train/masking.py); logits at t predict token t + 1.
- Pool rows use the Adam-preconditioned gradient (`adam=True`) as METHODS.md and the LESS
  reference code define it: the checkpoint's optimizer moments advanced by this gradient,
  m' = b1 m + (1 - b1) g and v' = b2 v + (1 - b2) g^2, then m' / sqrt(v' + eps), with the
  betas and eps of the warm-up's own optimizer. (The paper writes it with bias-corrected
  moments and eps outside the root; see docs/costly_scorers.md.) Target rows use the plain
  gradient.
- Features are Projector(seed) projections of those vectors, L2-normalised.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

from pipelines.models import loading
from pipelines.score.projection import Projector
from pipelines.train import checkpoints as train_checkpoints
from pipelines.train import masking


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]  # masking.IGNORE where no loss
    truncated: bool

    @property
    def n_loss_tokens(self) -> int:
        return sum(1 for label in self.labels[1:] if label != masking.IGNORE)  # nothing predicts token 0


class GradientFeaturizer:
    def __init__(self, base: str, trust_remote_code: bool, checkpoint_dirs: list[str], settings: dict):
        import torch
        from peft import PeftModel
        from peft.utils import load_peft_weights

        self.settings = settings
        self.device = loading.pick_device(settings["device"], settings["num_gpus"])
        loading.set_threads(settings["threads"], settings["num_cpus"])
        local_dirs = [train_checkpoints.local_copy(d) for d in checkpoint_dirs]
        self.tokenizer, model = loading.load_causal_lm(loading.ModelRef(base, trust_remote_code), "float32", "cpu")
        self.model = PeftModel.from_pretrained(model, local_dirs[0], is_trainable=True).to(self.device).eval()
        self.names = [name for name, p in self.model.named_parameters() if p.requires_grad]
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.adapters = [load_peft_weights(d, device="cpu") for d in local_dirs]
        self.moments = [self._moments(d) for d in local_dirs]
        self.keeps_positions = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.chat = masking.uses_chat_template(self.tokenizer, settings["template"])
        self.closers = masking.special_texts(self.tokenizer)
        self.n_features = sum(p.numel() for p in self.params)
        cache = settings["cache_mb"] * 2**20
        self.projector = Projector(
            settings["seed"], self.n_features, settings["dim"], settings["rows_per_chunk"], cache, self.device
        )
        self._torch = torch

    def _moments(self, folder: str) -> dict:
        """Adam's m, v (flat, in parameter order), step, betas and eps from a checkpoint."""
        import torch

        saved = train_checkpoints.read_optimizer(folder)["optimizer"]
        state = {name.removeprefix("module."): moments for name, moments in saved["state"].items()}  # DDP's prefix
        group = saved["param_groups"][0]
        missing = [name for name in self.names if name not in state]
        if missing:
            raise ValueError(f"{folder}: the optimizer state has no moments for {missing[:3]} (of {len(missing)})")

        def flat(key: str):
            return torch.cat([state[name][key].reshape(-1).float() for name in self.names]).to(self.device)

        beta1, beta2 = group["betas"]
        return {"m": flat("exp_avg"), "v": flat("exp_avg_sq"), "beta1": beta1, "beta2": beta2, "eps": group["eps"]}

    def encode(self, messages: list[dict]) -> Example | None:
        """Token ids and loss labels of a row; None when it has no assistant turn to take a loss on."""
        turns = [(m["role"], m["content"]) for m in messages]
        if not any(role == "assistant" for role, _ in turns):
            return None
        encoded = masking.encode(self.tokenizer, turns, self.chat, self.settings["max_length"], self.closers)
        return Example(encoded.input_ids, encoded.labels, encoded.truncated)

    def use_checkpoint(self, index: int) -> None:
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(self.model, self.adapters[index])
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"checkpoint {index}: adapter keys the model lacks: {result.unexpected_keys[:3]}")

    def gradient(self, example: Example):
        """The flat LoRA gradient of the example's mean token loss."""
        torch = self._torch
        ids = torch.tensor([example.input_ids], device=self.device)
        targets = [(t, label) for t, label in enumerate(example.labels) if t > 0 and label != masking.IGNORE]
        positions = torch.tensor([t - 1 for t, _ in targets], device=self.device)
        if self.keeps_positions:  # the output head only where a loss token is predicted
            logits = self.model(input_ids=ids, logits_to_keep=positions).logits[0]
        else:
            logits = self.model(input_ids=ids).logits[0, positions]
        labels = torch.tensor([label for _, label in targets], device=self.device)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        grads = torch.autograd.grad(loss, self.params)
        return torch.cat([g.reshape(-1) for g in grads])

    def adam_direction(self, gradient, checkpoint: int):
        """m' / sqrt(v' + eps): the checkpoint's Adam moments advanced by this gradient, no bias correction."""
        moments = self.moments[checkpoint]
        beta1, beta2 = moments["beta1"], moments["beta2"]
        m = beta1 * moments["m"] + (1 - beta1) * gradient
        v = beta2 * moments["v"] + (1 - beta2) * gradient * gradient
        return m / (v + moments["eps"]).sqrt()

    def features(self, examples: list[Example], adam: bool) -> np.ndarray:
        """(checkpoints, examples, dim) L2-normalised projected gradients; every example needs a loss token."""
        torch = self._torch
        n_checkpoints = len(self.adapters)
        vectors = torch.empty((n_checkpoints * len(examples), self.n_features), device=self.device)  # filled in place
        for checkpoint in range(n_checkpoints):
            self.use_checkpoint(checkpoint)
            for index, example in enumerate(examples):
                gradient = self.gradient(example)
                with torch.no_grad():
                    row = self.adam_direction(gradient, checkpoint) if adam else gradient
                    vectors[checkpoint * len(examples) + index] = row
        with torch.no_grad():
            projected = self.projector.project(vectors)
            normalised = torch.nn.functional.normalize(projected, dim=1)
        return normalised.reshape(len(self.adapters), len(examples), -1).cpu().numpy()
