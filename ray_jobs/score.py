"""The `score` stage alone, on the Ray cluster this job runs in (see ray_jobs/run.py).

ray job submit --runtime-env ray_jobs/runtime_env.yaml --working-dir . -- \\
    python -m ray_jobs.score --config configs/demo.yaml [--run-dir s3://BUCKET/runs/demo]
"""

from ray_jobs import launch

if __name__ == "__main__":
    launch("score")
