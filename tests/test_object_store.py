"""Inputs and the run folder on S3: a real S3 API (moto's server) on 127.0.0.1.

Moto stands in for AWS S3, which cannot be reached from here; everything else is real:
pyarrow's S3 filesystem, the embedded Ray workers, DuckDB over the run's tables.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pyarrow.parquet as pq
import pytest

from pipelines import storage
from tests.conftest import BIN, cli_env, write_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]
BUCKET = "winnow-test"


@pytest.fixture(scope="module")
def s3_env():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    import boto3

    boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).create_bucket(Bucket=BUCKET)
    yield env
    server.terminate()
    server.wait()


def test_ingest_reads_and_writes_object_storage(s3_env, tmp_path, monkeypatch):
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    storage._filesystem_for.cache_clear()
    chat = {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}
    for name, rows in {"a.jsonl": [chat], "sub/b.jsonl": [{"question": "1+1?", "answer": "#### 2"}, "oops"]}.items():
        fs, path = storage.resolve(f"s3://{BUCKET}/in/{name}")
        with fs.open_output_stream(path) as out:
            out.write("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows).encode())
    run_dir = f"s3://{BUCKET}/runs/one"
    source = {"kind": "files", "name": "remote", "paths": [f"s3://{BUCKET}/in/**/*.jsonl"]}
    config = write_config(tmp_path / "c.yaml", run_dir, [source])

    done = subprocess.run(
        [str(BIN / "winnow"), "ingest", str(config)], env=cli_env(**s3_env), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr

    fs, path = storage.resolve(f"{run_dir}/pool")
    pool = pq.read_table(path, filesystem=fs)
    assert sorted(r["messages"][0]["content"] for r in pool.to_pylist()) == ["1+1?", "Q"]
    assert storage.read_json(f"{run_dir}/pool/_SUCCESS.json")["rows_rejected"] == 1
    assert not storage.exists(f"{run_dir}/_work")

    query = subprocess.run(
        [str(BIN / "winnow"), "sql", run_dir, "SELECT reason, row FROM rejects"],
        env=cli_env(**s3_env),
        capture_output=True,
        text=True,
    )
    assert query.returncode == 0, query.stderr
    assert "malformed JSON" in query.stdout and "│ 2 " in query.stdout
