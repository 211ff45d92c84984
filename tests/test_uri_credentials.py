"""A location with credentials in it (`s3://KEY:SECRET@bucket/...`) is refused before anything
runs, naming where it was and never repeating the secret (issue 26, item 10).

Real config loading, real storage calls and the real `winnow` command in subprocesses; no
object store is reached (the refusal comes first).
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from pipelines import config as config_module
from pipelines import storage, uris
from tests.conftest import BIN, cli_env

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzEXAMPLEKEY"  # with "/", as AWS secrets often are
KEY = "AKIAIOSFODNN7EXAMPLE"


def winnow(*args):
    return subprocess.run(
        [str(BIN / "winnow"), *map(str, args)],
        env=cli_env(COLUMNS="400"),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        (f"s3://{KEY}:{SECRET}@bucket/run", "s3://***@bucket/run"),
        (f"s3://{KEY}@bucket/run", "s3://***@bucket/run"),
        ("gs://user:pa%2Fss@bucket/x.jsonl", "gs://***@bucket/x.jsonl"),
        ("https://ghp_token@example.com/data.jsonl", "https://***@example.com/data.jsonl"),
        ("abfs://user:pass@account.dfs.core.windows.net/c", "abfs://***@account.dfs.core.windows.net/c"),
    ],
)
def test_a_location_with_credentials_is_refused_masked(location, shown):
    with pytest.raises(uris.CredentialsInLocation) as refused:
        storage.exists(location)  # every storage call resolves its location first
    message = str(refused.value)
    assert message.startswith(f"{shown} has credentials in it; pass credentials through the environment")
    assert "profile" in message
    assert SECRET not in message and KEY not in message and "pass@" not in message and "ghp_" not in message


@pytest.mark.parametrize(
    "location",
    [
        "s3://bucket/path/model@v1/x.parquet",  # "@" in a key, not in the authority
        "abfs://container@account.dfs.core.windows.net/run",  # Azure names a container there
        "http://localhost:8000/v1",
        "/tmp/someone@host/run",
        "memory://run",
    ],
)
def test_locations_without_credentials_pass(location):
    assert uris.check(location) == location


def _config(tmp_path, run_dir: str) -> str:
    document = {
        "name": "creds",
        "run_dir": run_dir,
        "ingest": {"sources": [{"kind": "files", "name": "pool", "paths": [f"s3://{KEY}:{SECRET}@bucket/*.jsonl"]}]},
        "models": {"base": {"path": f"gs://{KEY}@models/base"}},
        "evaluate": {
            "benchmarks": [{"kind": "file", "name": "bench", "path": f"https://{KEY}:{SECRET}@host/b.jsonl"}],
            "engine": {"kind": "vllm"},
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return str(path)


def test_a_config_names_every_key_that_holds_credentials(tmp_path):
    with pytest.raises(config_module.ConfigError) as refused:
        config_module.load(_config(tmp_path, str(tmp_path / "run")), run_dir=f"s3://{KEY}:{SECRET}@bucket/run")
    lines = str(refused.value).splitlines()
    assert sorted(lines[1:5]) == [  # in any order
        "  evaluate.benchmarks[0].path: https://***@host/b.jsonl has credentials in it",
        "  ingest.sources[0].paths[0]: s3://***@bucket/*.jsonl has credentials in it",
        "  models.base.path: gs://***@models/base has credentials in it",
        "  run_dir: s3://***@bucket/run has credentials in it",
    ]
    assert lines[5].startswith("  pass credentials through the environment (AWS_*, GOOGLE_*")
    assert SECRET not in str(refused.value) and KEY not in str(refused.value)


def test_the_command_refuses_them_with_status_2_and_writes_nothing(tmp_path):
    config = _config(tmp_path, f"s3://{KEY}:{SECRET}@bucket/run")
    run = winnow("ingest", config)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "run_dir: s3://***@bucket/run has credentials in it" in run.stderr
    queried = winnow("sql", f"s3://{KEY}:{SECRET}@bucket/run", "SELECT 1")
    assert queried.returncode == 2, queried.stdout + queried.stderr
    assert "s3://***@bucket/run has credentials in it" in queried.stderr
    for done in (run, queried):
        assert SECRET not in done.stdout + done.stderr and KEY not in done.stdout + done.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["config.yaml"]  # no run folder, no log
