"""A config whose actor pool would take every CPU of the embedded Ray is refused before the
stage starts, naming what to lower: on 2 CPUs `model_loss` with `num_cpus: 2` left Ray Data's
reads waiting for 0.25 CPU and the run sat 11.5 minutes with no output (issue 28)."""

from __future__ import annotations

import pytest

from pipelines import fault_tolerance
from pipelines.config import ConfigError
from pipelines.score.parts import ACTOR_IO_CPUS

pytestmark = pytest.mark.ray


def test_a_pool_of_every_cpu_is_refused_naming_the_setting(ray_local):
    with pytest.raises(
        ConfigError, match=r"score.model_loss.num_cpus x concurrency ask for 2 of the embedded Ray's 2 CPUs"
    ):
        fault_tolerance.refuse_starving_pool(
            "score model_loss", "score.model_loss.num_cpus x concurrency", 2.0, ACTOR_IO_CPUS
        )


def test_a_pool_that_leaves_the_reads_their_share_runs(ray_local):
    fault_tolerance.refuse_starving_pool("score model_loss", "score.model_loss.num_cpus x concurrency", 1.0, 0.25)
    fault_tolerance.refuse_starving_pool("generate", "the vllm engine's num_cpus x concurrency", 1.75, 0.25)


def test_a_joined_cluster_is_not_judged_by_its_cpus_now(ray_local, monkeypatch):
    from pipelines import ray_runtime

    monkeypatch.setitem(ray_runtime._run, "embedded", False)  # as after --address: it may grow
    fault_tolerance.refuse_starving_pool("score model_loss", "score.model_loss.num_cpus x concurrency", 8.0, 0.25)


def test_the_capacity_guard_waits_as_long_as_the_config_ensure_ray_was_given_says(ray_local, monkeypatch):
    """ray_runtime keeps ray.capacity_wait_s and fault_tolerance reads it there: one way, no circle."""
    from pipelines import ray_runtime
    from pipelines.config import RayConfig

    monkeypatch.setitem(ray_runtime._run, "capacity_wait_s", None)
    assert fault_tolerance.capacity_wait_s() == fault_tolerance.DEFAULT_CAPACITY_WAIT_S  # unset: 600 s
    ray_runtime.ensure_ray(RayConfig(capacity_wait_s=5))  # Ray is up already: only the settings are taken
    assert fault_tolerance.capacity_wait_s() == 5
    ray_runtime.ensure_ray(RayConfig())
    assert fault_tolerance.capacity_wait_s() == fault_tolerance.DEFAULT_CAPACITY_WAIT_S
