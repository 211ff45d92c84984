"""The experiment config: one YAML file, validated up front.

Every model forbids unknown keys, so a typo is an error that names the key and lists the
keys allowed there; a bad value names the key and the values allowed. Relative paths are
relative to the working directory the command runs in (the repository root for
`ray job submit --working-dir .`).
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Annotated, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from pipelines import uris
from pipelines.critique.settings import CritiqueConfig
from pipelines.evaluate.settings import EvaluateConfig
from pipelines.fences import Name
from pipelines.ingest.settings import IngestConfig
from pipelines.models.settings import ModelSpec
from pipelines.score.settings import ScoreConfig
from pipelines.select.settings import SelectConfig
from pipelines.settings import Strict
from pipelines.train.settings import TrainConfig


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the key."""


class RayConfig(Strict):
    address: str | None = None  # None: RAY_ADDRESS if set (inside `ray job submit`), else embedded
    num_cpus: int | None = Field(default=None, gt=0)  # logical CPUs of the embedded Ray
    # after losing a node, how long a stage waits for capacity to come back before it fails
    capacity_wait_s: float | None = Field(default=None, gt=0)  # None: 600 (pipelines/fault_tolerance.py)


class ExperimentConfig(Strict):
    name: Name
    run_dir: str  # local path or object-store URI
    ray: RayConfig = RayConfig()
    ingest: IngestConfig
    models: dict[Name, ModelSpec] = {}  # names that scorers and trainers refer to
    score: ScoreConfig | None = None
    select: SelectConfig = {}  # name -> selection; each becomes the table selections/<name>
    critique: CritiqueConfig | None = None  # candidates, teacher critiques, CFT examples
    train: TrainConfig | None = None  # arms (fine-tuning runs) and warm-up models
    evaluate: EvaluateConfig | None = None  # benchmarks every arm (and each base model) answers

    @model_validator(mode="after")
    def _start_from_earlier_selections(self):
        names = list(self.select)
        for index, (name, spec) in enumerate(self.select.items()):
            start = getattr(spec, "start_from", None)
            if start is not None and start not in names[:index]:
                raise ValueError(f"select.{name}.start_from: {start!r} is not a selection defined before it")
        return self

    @model_validator(mode="after")
    def _baseline_is_evaluated(self):
        """evaluate.baseline names an arm the evaluate stage runs: a train arm (all its seeds) or
        `base-<model>` for a `models:` entry an arm starts from (experiment.evaluation_arms)."""
        baseline = self.evaluate.baseline if self.evaluate is not None else None
        if baseline is None:
            return self
        from pipelines.train.settings import arm_of

        arms = self.train.arms if self.train is not None else {}
        bases = {f"base-{arm.model}" for arm in arms.values() if arm.model in self.models}
        allowed = sorted({arm_of(name) for name in arms} | bases)
        if baseline not in allowed:
            raise ValueError(f"evaluate.baseline: {baseline!r} is not an evaluated arm; allowed: {allowed}")
        return self

    @field_validator("run_dir")
    @classmethod
    def _absolute(cls, run_dir: str) -> str:
        """Workers may run in another directory: a local run_dir is made absolute here."""
        return run_dir if "://" in run_dir else os.path.abspath(os.path.expanduser(run_dir))


def load(path: str | Path, run_dir: str | None = None) -> ExperimentConfig:
    """Read and validate a YAML config; `run_dir` overrides the config's."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    if run_dir is not None:
        document["run_dir"] = run_dir
    if credentials := uris.credentials_in(document):  # before anything logs or records a location
        raise ConfigError(f"{path}: invalid config\n{credentials}")
    try:
        return ExperimentConfig.model_validate(document)
    except ValidationError as error:
        raise ConfigError(f"{path}: invalid config\n" + explain(error)) from None


def explain(error: ValidationError) -> str:
    """One line per problem: the dotted key, what is wrong, and what is allowed."""
    lines = []
    for problem in error.errors():
        key, model = _walk(problem["loc"])
        kind = problem["type"]
        if problem["loc"][-1:] == ("[key]",):  # a mapping's key, such as a name under `models:`
            mapping, _ = _walk(problem["loc"][:-2])
            lines.append(f"  {mapping}: key {problem['loc'][-2]!r}: {problem['msg'].removeprefix('Value error, ')}")
        elif kind == "extra_forbidden":
            allowed = ", ".join(model.model_fields) if model else "?"
            lines.append(f"  {key}: unknown key; allowed here: {allowed}")
        elif kind == "missing":
            lines.append(f"  {key}: required key is missing")
        elif kind == "union_tag_invalid":
            tag, got, tags = _tag_name(problem), problem["ctx"]["tag"], problem["ctx"]["expected_tags"]
            lines.append(f"  {key}.{tag}: {got!r} is not allowed; allowed: {tags}")
        elif kind == "union_tag_not_found":
            lines.append(f"  {key}.{_tag_name(problem)}: required key is missing")
        else:
            shown = problem.get("input")
            got = "" if isinstance(shown, dict) else f" (got {shown!r})"  # a whole section says too much
            lines.append(f"  {key}: {problem['msg']}{got}")
    return "\n".join(lines)


def _walk(loc: tuple) -> tuple[str, type[BaseModel] | None]:
    """Dotted key for a pydantic error location, and the model that holds its last key."""
    key, annotation, owner = "", ExperimentConfig, None
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
            annotation = _item_type(annotation)
            continue
        members = _union_members(annotation)
        mapped = [typing.get_args(m)[1] for m in members if typing.get_origin(m) is dict]
        if mapped:  # a key of a mapping such as `models:`
            key += f".{part}"
            annotation = mapped[0]
            continue
        tagged = [m for m in members if part in _tags_of(m)]
        if tagged:  # pydantic puts a tagged union's tag into the location: skip it
            annotation = tagged[0]
            continue
        owner = next((m for m in members if _is_model(m)), None)
        key += f".{part}" if key else str(part)
        field = owner.model_fields.get(part) if owner else None
        annotation = field.annotation if field else None
    return key or "(top level)", owner


def _is_model(candidate) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, BaseModel)


def _union_members(annotation) -> list:
    if annotation is None:
        return []
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _union_members(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _union_members(arg)]
    return [annotation]


def _item_type(annotation):
    for member in _union_members(annotation):
        args = typing.get_args(member)
        if typing.get_origin(member) in (list, tuple) and args:
            return args[0]
    return None


TAG_FIELDS = ("kind", "method")  # the discriminators of the config's tagged unions


def _tags_of(member) -> tuple[str, ...]:
    """The tag values that select `member` in a tagged union (none for other types)."""
    if not _is_model(member):
        return ()
    field = next((member.model_fields[f] for f in TAG_FIELDS if f in member.model_fields), None)
    return typing.get_args(field.annotation) if field is not None else ()


def _tag_name(problem: dict) -> str:
    return str(problem.get("ctx", {}).get("discriminator", "kind")).strip("'")
