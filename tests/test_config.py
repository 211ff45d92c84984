import shlex
from pathlib import Path

import pytest
import yaml

from pipelines import config
from tests.conftest import REPO


def _load(tmp_path, document):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(document))
    return config.load(path)


BASE = {"name": "t", "run_dir": "/tmp/r", "ingest": {"sources": [{"kind": "mathematics", "rows": 10}]}}


def test_every_shipped_config_is_valid():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        assert config.load(path).name


def test_defaults(tmp_path):
    loaded = _load(tmp_path, BASE)
    source = loaded.ingest.sources[0]
    assert (source.name, source.seed, source.split, loaded.ray.address) == ("mathematics", 0, "train", None)


@pytest.mark.parametrize(
    "change,message",
    [
        (
            {"ingest": {"sources": [{"kind": "mathematics", "rows": 10, "colour": 1}]}},
            "ingest.sources[0].colour: unknown key; allowed here: kind, name, rows",
        ),
        (
            {"ingest": {"sources": [{"kind": "files", "name": "a", "paths": ["x"], "format": "csv"}]}},
            "ingest.sources[0].format: Input should be 'auto', 'openai'",
        ),
        (
            {"ingest": {"sources": [{"kind": "file", "name": "a"}]}},
            "ingest.sources[0].kind: 'file' is not allowed; allowed: 'files', 'mathematics'",
        ),
        (
            {"ingest": {"sources": [{"kind": "mathematics", "rows": 1, "modules": ["nope"]}]}},
            "unknown modules ['nope']; allowed: algebra__linear_1d",
        ),
        (
            {"ingest": {"sources": [{"kind": "mathematics", "rows": 1}, {"kind": "mathematics", "rows": 2}]}},
            "source names must be unique; repeated: ['mathematics']",
        ),
        (
            {"rayy": {}},
            "rayy: unknown key; allowed here: name, run_dir, ray, ingest, models, score, select, critique, train, "
            "evaluate",
        ),
        ({"name": None}, "name: Input should be a valid string"),
        (
            {"models": {"tiny": {"build": {"vocab_sise": 1}}}},
            "models.tiny.build.vocab_sise: unknown key; allowed here: vocab_size, hidden_size",
        ),
        ({"models": {"tiny": {"path": "x", "build": {}}}}, "models.tiny: Value error, give exactly one of"),
        (
            {"score": {"model_loss": {"model": "m", "dtype": "fp8"}}},
            "score.model_loss.dtype: Input should be 'auto', 'float32', 'bfloat16' or 'float16'",
        ),
    ],
)
def test_errors_name_the_key_and_what_is_allowed(tmp_path, change, message):
    with pytest.raises(config.ConfigError) as error:
        _load(tmp_path, {**BASE, **change})
    assert str(tmp_path / "c.yaml") in str(error.value)
    assert message in str(error.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(config.ConfigError, match="no such config file"):
        config.load(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(config.ConfigError, match="not valid YAML"):
        config.load(tmp_path / "bad.yaml")


def test_run_dir_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE))
    assert config.load(path, run_dir="s3://bucket/run").run_dir == "s3://bucket/run"
    assert config.load(path, run_dir="runs/x").run_dir == str(Path.cwd() / "runs" / "x")


def _submit_line(path) -> list[str]:
    """The `ray job submit ...` command in a config's header comment, continuation lines joined."""
    lines = [line.lstrip("#").strip() for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    start = next(i for i, line in enumerate(lines) if line.startswith("ray job submit"))
    command = []
    for line in lines[start:]:
        command.append(line.removesuffix("\\").strip())
        if not line.endswith("\\"):
            break
    return shlex.split(" ".join(command))


@pytest.mark.parametrize("name", ["selection_1m.yaml", "cft_math.yaml"])
def test_a_real_scale_config_opens_with_the_ray_job_submit_line_that_runs_it(name):
    from ray_jobs import run

    words = _submit_line(REPO / "configs" / name)
    assert words[:3] == ["ray", "job", "submit"] and "--working-dir" in words
    entry = words[words.index("--") + 1 :]
    assert entry[:3] == ["python", "-m", "ray_jobs.run"]
    args = run._parser(None, None).parse_args(entry[3:])
    assert args.config == f"configs/{name}"
    loaded = config.load(REPO / args.config, args.run_dir)
    assert loaded.run_dir.startswith("s3://") and loaded.evaluate is not None and loaded.train.arms


def test_the_selection_study_config_runs_every_method_and_scorer():
    loaded = config.load(REPO / "configs" / "selection_1m.yaml")
    scorers = {name for name, block in loaded.score if block is not None}
    assert scorers == {"compression", "embedding", "model_loss", "clusters", "selectit", "less"}
    methods = {(spec.method, getattr(spec, "score", None)) for spec in loaded.select.values()}
    assert {"random", "kcenter", "zip", "bottom_k"} <= {method for method, _ in methods}
    ranked = {score.split(".")[0] for _, score in methods if score}
    assert ranked == {"model_loss", "selectit", "less", "compression"}
    assert {spec.budget for spec in loaded.select.values()} == {10_000}
