"""Connect to Ray: an embedded local Ray by default, the cluster when there is one.

`address` in the config wins; otherwise RAY_ADDRESS (set inside `ray job submit`) connects
to the cluster the job runs in; otherwise a local Ray starts inside this process.
"""

from __future__ import annotations

import logging
import os

from pipelines.config import RayConfig


def ensure_ray(config: RayConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    address = config.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        # An embedded Ray's workers inherit this environment: keep vLLM's per-request INFO
        # lines out of the stage progress (a user's own setting wins).
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        ray.init(
            num_cpus=config.num_cpus,
            include_dashboard=False,
            log_to_driver=True,
            logging_level=logging.WARNING,
        )
    _quiet_ray_data()


def _quiet_ray_data() -> None:
    """Winnow prints its own stage progress; Ray Data's bars and INFO lines would bury it."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "bars disabled"


def shutdown_if_embedded() -> None:
    import ray

    if ray.is_initialized() and not os.environ.get("RAY_ADDRESS"):
        ray.shutdown()
