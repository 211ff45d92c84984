"""The `train:` section: arms (fine-tuning runs) and warm-up models.

An arm names a base model, one data reference and a preset; any field left unset takes the
preset's value. `resolve(arm)` gives the flat settings a run uses (and its identity hashes).

Presets reproduce the two studies' recipes (../shared/METHODS.md):
- `cft`: lr 5e-6, 1 epoch, global batch 512, cut-off 2048, warm-up 0.1 (Critique Fine-Tuning);
- `selection`: lr 7e-6, 3 epochs, global batch 128, cut-off 4096, warm-up 0.01, weight decay
  0.1 (the data-selection study);
- `none`: plain defaults for small runs.
Both studies use AdamW with a cosine schedule after a linear warm-up.

Seeds: an arm with `seeds: [0, 1]` becomes one run a seed, named `<arm>@s<seed>` (each
trained into models/<arm>@s<seed> and evaluated on its own); the report pools them back
into the arm's row (pipelines/report/comparisons.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from pipelines.fences import SEED_MARK, Name, RunName
from pipelines.settings import Strict, repeated
from pipelines.train import validate


def seeded_name(arm: str, seed: int) -> str:
    return f"{arm}{SEED_MARK}{seed}"


def arm_of(run: str) -> str:
    """The arm a run belongs to: `sft_random@s1` -> `sft_random`; an unseeded run is its arm."""
    return run.split(SEED_MARK, 1)[0]


def seed_of(run: str) -> int | None:
    _, mark, seed = run.partition(SEED_MARK)
    return int(seed) if mark else None


PRESETS: dict[str, dict] = {
    "cft": {
        "lr": 5e-6,
        "epochs": 1,
        "global_batch": 512,
        "max_length": 2048,
        "warmup_ratio": 0.1,
        "weight_decay": 0.0,
    },
    "selection": {
        "lr": 7e-6,
        "epochs": 3,
        "global_batch": 128,
        "max_length": 4096,
        "warmup_ratio": 0.01,
        "weight_decay": 0.1,
    },
    "none": {
        "lr": 1e-5,
        "epochs": 1,
        "global_batch": 32,
        "max_length": 2048,
        "warmup_ratio": 0.03,
        "weight_decay": 0.0,
    },
}
RECIPE_KEYS = tuple(PRESETS["none"])


class LoraSettings(Strict):
    r: int = Field(default=16, gt=0)
    alpha: int = Field(default=32, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    targets: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]  # module names peft wraps


class SelectCheckpoint(Strict):
    """Which checkpoint becomes models/<ARM>: the best by `metric` among those validated.

    `validation` is a callable "module:function" run by Ray Train on every checkpoint it saves
    (`fn(checkpoint, **validation_kwargs) -> {metric: value}`, see pipelines/train/validate.py);
    None uses the built-in held-out loss, which reports `val_loss`. Its module must be one of
    the project's (`pipelines.*`) or listed in `train.allow_validation_modules`.
    """

    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    keep: int = Field(default=3, gt=0)  # checkpoints kept on storage, best first (the latest is always kept)
    validation: str | None = None  # "module:function", checked by TrainConfig (validate.check_reference)
    validation_kwargs: dict = {}
    num_cpus: float = Field(default=1, gt=0)  # Ray resources of one validation task
    num_gpus: float = Field(default=0, ge=0)
    timeout_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _metric_has_a_source(self):
        if self.validation is None and self.metric != "val_loss":
            raise ValueError(f"metric {self.metric!r} needs a `validation` callable; the built-in one gives val_loss")
        return self


class TrainRun(Strict):
    """Everything about one fine-tuning run except its data."""

    model: str  # base model: a `models:` name, an arm or warm-up name, a checkpoint folder, or a hub name
    preset: Literal["cft", "selection", "none"] = "none"
    lr: float | None = Field(default=None, gt=0)
    epochs: int | None = Field(default=None, gt=0)
    global_batch: int | None = Field(default=None, gt=0)  # sequences an optimizer step, over all workers
    micro_batch: int = Field(default=1, gt=0)  # sequences a forward pass on one worker
    max_length: int | None = Field(default=None, gt=1)  # cut-off, in tokens
    warmup_ratio: float | None = Field(default=None, ge=0, lt=1)
    weight_decay: float | None = Field(default=None, ge=0)
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    packing: bool = False  # several examples a sequence (global_batch then counts packed sequences)
    template: Literal["auto", "chat", "plain"] = "auto"  # auto: the tokenizer's chat template if it has one
    lora: LoraSettings | None = None
    fsdp: bool = False  # shard parameters, gradients and optimizer state (FSDP2) instead of DDP
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: fp32 on CPU, bf16 autocast on GPU
    gradient_checkpointing: bool = False
    checkpoint_every_steps: int = Field(default=100, gt=0)  # and always at the last step
    keep_checkpoints: int = Field(default=2, gt=0)  # the latest ones; select_checkpoint.keep when set
    select_checkpoint: SelectCheckpoint | None = None
    validation_rows: int = Field(default=0, ge=0)  # held out of training for val_loss
    num_workers: int = Field(default=1, gt=0)
    use_gpu: bool = False
    cpus_per_worker: float = Field(default=1, gt=0)
    torch_threads: int | None = Field(default=None, gt=0)  # CPU workers; default: their CPUs
    max_failures: int = Field(default=3, ge=-1)  # worker failures survived (resuming from the last checkpoint)
    seed: int = 0
    max_steps: int | None = Field(default=None, gt=0)  # stop early (demos); the schedule spans these steps

    @model_validator(mode="after")
    def _consistent(self):
        select = self.select_checkpoint
        if select is not None and select.validation is None and self.validation_rows == 0:
            raise ValueError("select_checkpoint by val_loss needs validation_rows > 0")
        if self.fsdp and self.num_workers == 1:
            raise ValueError("fsdp needs num_workers > 1")
        global_batch = self.global_batch or PRESETS[self.preset]["global_batch"]
        if global_batch % self.num_workers:
            raise ValueError(f"global_batch {global_batch} is not a multiple of num_workers {self.num_workers}")
        return self


class ArmConfig(TrainRun):
    data: str  # "selection:<NAME>", "cft", or a path/glob of Parquet or JSON Lines files with `messages`
    seeds: list[int] | None = Field(default=None, min_length=1)  # one run a seed: <arm>@s<seed>

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and (twice := repeated(seeds)):
            raise ValueError(f"seeds must be distinct; repeated: {twice}")
        if seeds is not None and min(seeds) < 0:
            raise ValueError(f"seeds must be >= 0 (they name runs <arm>@s<seed>); got {seeds}")
        return seeds

    @model_validator(mode="after")
    def _seed_or_seeds(self):
        if self.seeds is not None and "seed" in self.model_fields_set:
            raise ValueError("give `seed` or `seeds`, not both")
        return self

    @field_validator("data")
    @classmethod
    def _data_reference(cls, data: str) -> str:
        if data.startswith("selection:") and not data.removeprefix("selection:"):
            raise ValueError("selection:<NAME> needs a selection name")
        return data


class WarmupConfig(TrainRun):
    """A short SFT on a sample of the pool (the IFD method scores with such a model)."""

    rows: int = Field(default=1000, gt=0)
    sample: Literal["random", "clusters"] = "random"  # clusters: equal shares of scores/clusters


class TrainConfig(Strict):
    arms: dict[RunName, ArmConfig] = {}  # RunName: a seed's run (<arm>@s<seed>) comes back re-validated
    warmup: dict[Name, WarmupConfig] = {}
    # modules besides pipelines.* whose functions a `select_checkpoint.validation` may name
    allow_validation_modules: list[str] = []

    @field_validator("allow_validation_modules")
    @classmethod
    def _allowed_modules(cls, modules: list[str]) -> list[str]:
        for module in modules:
            validate.check_allowed_module(module)
        return modules

    @model_validator(mode="after")
    def _validation_callables(self):
        """A validation callable names code that runs: only from the modules allowed."""
        for section, runs in (("arms", self.arms), ("warmup", self.warmup)):
            for name, run in runs.items():
                reference = run.select_checkpoint.validation if run.select_checkpoint else None
                if reference is None:
                    continue
                try:
                    validate.check_reference(reference, self.allow_validation_modules)
                except ValueError as error:
                    raise ValueError(f"{section}.{name}.select_checkpoint.validation: {error}") from None
        return self

    @model_validator(mode="after")
    def _names(self):
        shared = sorted(set(self.arms) & set(self.warmup))
        if shared:
            raise ValueError(f"names used by both arms and warmup: {shared} (both write models/<name>)")
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _one_run_a_seed(cls, data, handler):
        """An arm with `seeds` becomes one arm a seed, `<arm>@s<seed>` with that `seed`: the
        train and evaluate stages then treat each like any other arm."""
        config = handler(data)
        seeded = {name for name, arm in config.arms.items() if arm.seeds is not None}
        if not seeded:
            return config
        arms = {}
        for name, arm in config.arms.items():
            if arm.model in seeded:
                raise ValueError(f"arms.{name}.model: {arm.model!r} has seeds; name one run, e.g. {arm.model}@s0")
            for seed in arm.seeds or [None]:
                run = arm if seed is None else arm.model_copy(update={"seed": seed, "seeds": None})
                arms[name if seed is None else seeded_name(name, seed)] = run
        return handler(
            {"arms": arms, "warmup": config.warmup, "allow_validation_modules": config.allow_validation_modules}
        )


def resolve(run: TrainRun) -> dict:
    """The flat settings of a run: preset values filled in, nothing left None that has a default."""
    settings = run.model_dump(mode="json", exclude={"seeds"})  # a run has one seed: `seed`
    preset = PRESETS[run.preset]
    for key in RECIPE_KEYS:
        if settings[key] is None:
            settings[key] = preset[key]
    return settings
