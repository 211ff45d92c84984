"""`ray job submit` to a real Ray head started on 127.0.0.1 for this test."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pyarrow.parquet as pq
import pytest
import yaml

from tests.cluster import free_ports
from tests.conftest import BIN, REPO, cli_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PORT_FLAGS = (
    "--port",
    "--dashboard-port",
    "--ray-client-server-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
    "--node-manager-port",
    "--object-manager-port",
)


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A head node with a dashboard (job API), on free ports, stopped with its process group."""
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
    command = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        "--include-dashboard=true",
        "--num-cpus=2",
        "--disable-usage-stats",
        "--min-worker-port=0",
        "--max-worker-port=0",
        "--temp-dir",
        str(tmp_path_factory.mktemp("ray")),
    ]
    command += [f"{flag}={port}" for flag, port in ports.items()]
    log = tmp_path_factory.mktemp("ray-log") / "head.log"
    head = subprocess.Popen(
        command, env=cli_env(), start_new_session=True, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    address = f"http://127.0.0.1:{ports['--dashboard-port']}"
    try:
        _wait_for_jobs_api(address, head, log)
        yield address
    finally:
        head.terminate()  # `ray start --block` stops its processes on SIGTERM; then sweep the group
        try:
            head.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)


def _wait_for_jobs_api(address: str, head: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited: {log.read_text()[-4000:]}")
        try:
            urllib.request.urlopen(f"{address}/api/version", timeout=2).close()
            return
        except urllib.error.HTTPError:  # 401: token authentication is on; `ray job` sends the token
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"the Ray dashboard did not come up: {log.read_text()[-4000:]}")


def test_submitted_job_ingests_the_demo_config(ray_head, tmp_path):
    run_dir = tmp_path / "run"
    submit = [
        str(BIN / "ray"),
        "job",
        "submit",
        "--address",
        ray_head,
        "--runtime-env",
        "ray_jobs/runtime_env.yaml",
        "--working-dir",
        ".",
        "--",
        "python",
        "-m",
        "ray_jobs.run",
        "--config",
        "configs/demo.yaml",
        "--run-dir",
        str(run_dir),
        "--stage",
        "ingest",
    ]
    # The head enables Ray's token authentication; the client sends ~/.ray/auth_token in token mode.
    done = subprocess.run(
        submit, cwd=REPO, env=cli_env(RAY_AUTH_MODE="token"), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "succeeded" in done.stdout

    manifest = json.loads((run_dir / "pool" / "_SUCCESS.json").read_text())
    pool = pq.read_table(run_dir / "pool")
    assert pool.num_rows == manifest["rows_out"]
    # In the job's working dir (an uploaded copy of the repo) ../shared is absent, so the
    # optional file sources are skipped and the pool is the 3,000 generated rows, deduplicated.
    assert set(pool["source"].to_pylist()) == {"mathematics"}
    assert manifest["sources"]["mathematics"]["rows_in"] == 3_000


def test_submitted_job_scores_and_selects_with_the_demo_settings(ray_head, tmp_path):
    """The demo's models, scorers and selections as one job, on a pool small enough for a test."""
    document = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    document["ingest"]["sources"] = [{"kind": "mathematics", "rows": 1500, "seed": 0}]
    # the small-model kit in place of the demo's SmolLM2 (its own tests cover it): a quick job
    document["models"] = {"tiny": {"build": {"vocab_size": 1024, "train_rows": 1500}}}
    # a 15% sample of 1,500 rows leaves the IFD selections (IFD < 1 only) 100 rows to choose
    document["score"]["model_loss"].update(model="tiny", engine="transformers", dtype="float32", sample_fraction=0.15)
    for selection in document["select"].values():
        selection["budget"] = 100
    config = tmp_path / "demo-small.yaml"
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    run_dir = tmp_path / "run"
    stages = [flag for stage in ("ingest", "models", "score", "select") for flag in ("--stage", stage)]
    submit = [str(BIN / "ray"), "job", "submit", "--address", ray_head, "--runtime-env", "ray_jobs/runtime_env.yaml"]
    submit += ["--working-dir", ".", "--", "python", "-m", "ray_jobs.run", "--config", str(config)]
    submit += ["--run-dir", str(run_dir), *stages]
    done = subprocess.run(
        submit, cwd=REPO, env=cli_env(RAY_AUTH_MODE="token"), capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    rows = json.loads((run_dir / "pool" / "_SUCCESS.json").read_text())["rows_out"]
    for scorer in ("compression", "embedding", "model_loss", "clusters"):
        assert pq.read_table(run_dir / "scores" / scorer).num_rows == rows, scorer
    for name in document["select"]:
        assert pq.read_table(run_dir / "selections" / name).num_rows == 100, name
