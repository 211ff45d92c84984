"""Names and paths never reach outside the run folder (issue 26, items 1 and 12).

The first fence is the name rule the config applies to every name that becomes a path; the
second is the path check in runs.py / storage.py, shown here by calling the models stage with
a config built without validation, as a name that slipped past the first fence would reach it.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import schemas
from pipelines import config, fences, runs, storage
from pipelines.evaluate import stage as evaluate_stage
from pipelines.models import stage as models_stage
from pipelines.models.settings import ModelSpec, SmallModelBuild
from tests.conftest import BIN, cli_env

BASE = {"name": "t", "run_dir": "/tmp/r", "ingest": {"sources": [{"kind": "mathematics", "rows": 10}]}}
CLIMBER = "../../../victim"
ENGINE = {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m"}


def _load(tmp_path, document):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(document))
    return config.load(path)


def _victim(tmp_path):
    """T/victim/keep.txt beside the run folder T/r/run1, as in the issue."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    run_dir = tmp_path / "r" / "run1"
    run_dir.mkdir(parents=True)
    return victim, run_dir


def _assert_untouched(victim):
    assert sorted(p.name for p in victim.iterdir()) == ["keep.txt"]
    assert (victim / "keep.txt").read_text() == "precious"


def _kinds(bad: str) -> list[tuple[dict, str]]:
    """(config change, the key the error names) for every name kind that becomes a path."""
    model = {"build": {"vocab_size": 4096}}
    arm = {"model": "m", "data": "cft"}
    return [
        ({"name": bad}, "name:"),
        ({"models": {bad: model}}, f"models: key {bad!r}"),
        ({"select": {bad: {"method": "random", "budget": 3}}}, f"select: key {bad!r}"),
        ({"select": {"a": {"method": "kcenter", "budget": 3, "start_from": bad}}}, "select.a.start_from:"),
        ({"train": {"arms": {bad: arm}}}, f"train.arms: key {bad!r}"),
        ({"train": {"warmup": {bad: {"model": "m"}}}}, f"train.warmup: key {bad!r}"),
        ({"ingest": {"sources": [{"kind": "mathematics", "rows": 10, "name": bad}]}}, "ingest.sources[0].name:"),
        ({"evaluate": {"engine": ENGINE, "benchmarks": [{"name": bad, "path": "b.jsonl"}]}}, "benchmarks[0].name:"),
        (
            {"evaluate": {"engine": ENGINE, "benchmarks": [{"kind": "mathematics", "rows": 5, "name": bad}]}},
            "benchmarks[0].name:",
        ),
        (
            {"score": {"less": {"model": "m", "targets": {bad: {"path": "t.jsonl"}}}}},
            f"score.less.targets: key {bad!r}",
        ),
    ]


BAD_NAMES = [CLIMBER, "..", "a/b", ".hidden", "a..b", "name\n", "-dash", "x" * 65, "ünï", "a b", ""]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_every_name_kind_that_becomes_a_path_is_refused_naming_the_key_and_the_rule(tmp_path, bad):
    for change, key in _kinds(bad):
        with pytest.raises(config.ConfigError) as error:
            _load(tmp_path, {**BASE, **change})
        message = str(error.value)
        assert key in message, (change, message)
        assert fences.NAME_RULE in message, message


def test_names_the_rule_allows_still_load(tmp_path):
    longest = "x" * fences.MAX_NAME_CHARS
    document = {
        **BASE,
        "name": "run.v2-final_1",
        "models": {longest: {"path": "/models/m"}, "tiny.v1": {"build": {}}},
        "select": {"random_1k": {"method": "random", "budget": 3}},
        "train": {"arms": {"sft_random": {"model": "tiny.v1", "data": "cft", "seeds": [0, 12]}}},
    }
    loaded = _load(tmp_path, document)
    assert list(loaded.train.arms) == ["sft_random@s0", "sft_random@s12"]
    assert longest in loaded.models


def test_the_issue_config_is_refused_by_the_winnow_command_and_nothing_is_touched(tmp_path):
    """Item 1 as filed: `winnow run --stage ingest --stage models` exited 0 and emptied T/victim."""
    victim, run_dir = _victim(tmp_path)
    document = {**BASE, "run_dir": str(run_dir), "models": {CLIMBER: {"build": {"vocab_size": 4096}}}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(document))
    done = subprocess.run(
        [str(BIN / "winnow"), "run", str(path), "--stage", "ingest", "--stage", "models"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"models: key {CLIMBER!r}: not an allowed name" in done.stderr
    _assert_untouched(victim)
    assert list(run_dir.iterdir()) == []


def _finished_pool(run_dir, rows: int = 40) -> None:
    messages = [
        [{"role": "user", "content": f"what is {i} + {i}?"}, {"role": "assistant", "content": f"{2 * i}"}]
        for i in range(rows)
    ]
    table = pa.table(
        {
            "id": [f"id{i}" for i in range(rows)],
            "source": ["s"] * rows,
            "messages": messages,
            "reference": [None] * rows,
            "meta": ["{}"] * rows,
        },
        schema=schemas.SCHEMAS["pool"],
    )
    pool = run_dir / "pool"
    pool.mkdir()
    pq.write_table(table, pool / "part-0.parquet")
    (pool / runs.MANIFEST).write_text(json.dumps({"stage": "ingest", "identity": {}}))


def test_the_models_stage_with_a_name_past_the_config_refuses_before_deleting_anything(tmp_path):
    """The second fence: the models stage itself, given the issue's name (the config was built
    without validation), fails naming the path and the run folder; T/victim keeps its file."""
    victim, run_dir = _victim(tmp_path)
    _finished_pool(run_dir)
    spec = ModelSpec.model_construct(path=None, build=SmallModelBuild(vocab_size=4096, train_rows=40), gguf=None)
    unchecked = config.ExperimentConfig.model_construct(run_dir=str(run_dir), models={CLIMBER: spec})
    with pytest.raises(fences.PathOutsideRunError) as error:
        models_stage.run(unchecked)
    assert str(victim) in str(error.value) and f"run folder {run_dir}" in str(error.value)
    _assert_untouched(victim)
    assert not (run_dir / "_work").exists()


def test_a_commit_whose_table_climbs_out_deletes_nothing(tmp_path):
    victim, run_dir = _victim(tmp_path)
    stage = runs.StageRun(str(run_dir), "select-a", "selections/a", {"stage": "select-a"})
    stage.open_work()
    work = storage.join(stage.work_dir, "out")
    storage.write_json_atomic({"rows": 1}, storage.join(work, "x.json"))
    earlier = {"stage": "select-a", "identity": {}}
    storage.write_json_atomic(earlier, stage.manifest_location)
    with pytest.raises(fences.PathOutsideRunError):
        stage.commit({"selections/a": work, "../../victim": work}, {})
    _assert_untouched(victim)
    assert storage.read_json(stage.manifest_location) == earlier  # nothing deleted before the check


def test_a_symlink_inside_the_run_folder_pointing_out_is_outside(tmp_path):
    victim, run_dir = _victim(tmp_path)
    (run_dir / "models").mkdir()
    os.symlink(victim, run_dir / "models" / "linked")
    with pytest.raises(fences.PathOutsideRunError, match="resolves to"):
        runs.StageRun(str(run_dir), "model-linked", "models/linked", {})
    with pytest.raises(fences.PathOutsideRunError):
        storage.remove(str(run_dir / "models" / "linked"), within=str(run_dir))
    _assert_untouched(victim)


@pytest.mark.parametrize(
    "location,inside",
    [
        ("s3://b/runs/r1/models/a", True),
        ("s3://b/runs/r1/_work/select-a/out", True),
        ("s3://b/runs/r1/models/../../x", False),
        ("s3://b/runs/r1", False),  # the run folder itself is never a stage's to delete
        ("s3://b/runs/r10/pool", False),  # a sibling sharing the prefix's characters
        ("gs://b/runs/r1/pool", False),  # another store
        ("/b/runs/r1/pool", False),
    ],
)
def test_object_store_paths_are_compared_as_normalised_keys(location, inside):
    if inside:
        assert fences.check_inside("s3://b/runs/r1/", location) == location
    else:
        with pytest.raises(fences.PathOutsideRunError, match="is not inside the run folder s3://b/runs/r1"):
            fences.check_inside("s3://b/runs/r1/", location)


def test_an_object_store_run_refuses_a_climbing_table_before_deleting():
    """memory:// is fsspec's in-process store: the code path s3:// and gs:// take."""
    run_dir = "memory://bucket/fence-run/r1"
    neighbour = "memory://bucket/fence-run/victim/keep.json"
    storage.write_json_atomic({"keep": True}, neighbour)
    with pytest.raises(fences.PathOutsideRunError):
        runs.StageRun(run_dir, "model-x", "models/../../victim", {})
    with pytest.raises(fences.PathOutsideRunError):
        storage.remove("memory://bucket/fence-run/r1/../victim", within=run_dir)
    assert storage.read_json(neighbour) == {"keep": True}


@pytest.mark.parametrize("name", ["a\n", "a@s1\n", "a@s\u0663", "a@s", "a@s1@s2", "../a@s1", "a@sx"])
def test_run_names_use_the_whole_string(name):
    """Item 12: re.match with `$` let "a\\n" through; the evaluate stage checks arm names too."""
    assert not fences.is_run_name(name)
    with pytest.raises(ValueError, match="arm names must be"):
        evaluate_stage._check_arms({name: "m"})


def test_run_names_allowed():
    assert all(fences.is_run_name(n) for n in ["a", "sft_random@s0", "base-tiny", "x.y@s123"])


def test_concurrent_atomic_writes_of_one_file_from_threads_never_collide(tmp_path):
    """Item 12: the temporary name was per process, so two threads wrote and renamed one file."""
    location = str(tmp_path / "t" / "m.json")
    failures: list[BaseException] = []

    def write(number: int) -> None:
        try:
            for round_ in range(30):
                storage.write_json_atomic({"thread": number, "round": round_, "pad": "x" * 4096}, location)
        except BaseException as error:  # noqa: BLE001 - collected and asserted below
            failures.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert storage.read_json(location)["pad"] == "x" * 4096
    assert os.listdir(tmp_path / "t") == ["m.json"]


def test_committed_files_are_fsynced_before_the_rename_and_their_folder_after(tmp_path, monkeypatch):
    """A power cut cannot be staged here: a spy around the real os.fsync (which still runs)
    records what was synced. The file is synced under its temporary name, so before the rename;
    its folder last, after it."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(descriptor):
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        return real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    location = tmp_path / "t" / runs.MANIFEST
    storage.write_json_atomic({"rows_out": 1}, str(location))
    assert len(synced) == 2 and synced[0].startswith(f"{location}.tmp-{os.getpid()}-")
    assert synced[1] == str(location.parent)
    assert json.loads(location.read_text()) == {"rows_out": 1}
