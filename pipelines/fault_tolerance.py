"""What a stage does when a Ray node dies under it: every retry setting, in one place.

Stages launch their Ray work with these options (Ray Data tasks and actor pools, Ray
Train), so a node lost mid-stage costs only the work that was on it:
- a lost task (a read, a compression part, a part write) runs again on another node; its
  output is named by the ids it holds, so a re-run rewrites the same file;
- a lost actor (a model-loss, embedding or vLLM engine) is restarted, and the batches it
  held are sent to it again; every part is written whole or not at all, so a batch is
  either in the table once or redone;
- a lost training worker stops the worker group; Ray Train starts a new one, which
  resumes from the last registered checkpoint (pipelines/train/loop.py).

Ray waits for capacity without limit: a pool actor or training worker with no node to run
on stays pending. `capacity_guard` bounds that wait: when a node has died and the stage has
work that no node can take, with no progress, for `ray.capacity_wait_s`, the stage fails
with `CapacityLost`, which names the lost node, instead of hanging.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager

# A task lost with its node is re-run up to this many times: enough for a few preemptions
# in a row, yet a task that itself brings its node down (memory) does not loop for ever.
TASK_MAX_RETRIES = 5
# An exception raised by Winnow's own code (bad data, a bug) fails the same way again:
# only system failures (a lost worker or node) are retried.
TASK_RETRY_EXCEPTIONS = False
# A pool actor lost with its node is restarted (its model loaded again) up to this many
# times; a model that crashes its process on every load stops here with Ray's error.
ACTOR_MAX_RESTARTS = 5
# The batches in flight on a lost actor go to its restarted self: no limit of their own,
# since each retry follows a restart and restarts are bounded above.
ACTOR_MAX_TASK_RETRIES = -1
# How long a stage may wait, after losing a node, for capacity to come back before it
# fails (ray.capacity_wait_s overrides it): a cloud node takes minutes to boot.
DEFAULT_CAPACITY_WAIT_S = 600.0
STOP_GRACE_S = 20.0  # how long the stage may take to answer the guard's interrupt
POLL_SECONDS = 1.0  # how often the guard reads the node table and the pending demand
# Node deaths that lose no work: a drained idle node, or one stopped on purpose.
HARMLESS_DEATHS = {1: "expected termination", 4: "autoscaler drained an idle node"}

log = logging.getLogger(__name__)


class CapacityLost(RuntimeError):
    """A node died under a stage and no capacity came back in time; the message names it."""


def task_options() -> dict:
    """Ray remote options of a stateless task (Ray Data map or read, a plain ray.remote)."""
    return {"max_retries": TASK_MAX_RETRIES, "retry_exceptions": TASK_RETRY_EXCEPTIONS}


def refuse_starving_pool(label: str, setting: str, pool_cpus: float, io_cpus: float) -> None:
    """On an embedded Ray, whose CPUs are fixed, refuse an actor pool that leaves Ray Data's
    reads and writes less than the `io_cpus` they ask for: the pool would start, no block would
    ever reach it, and the stage would wait for ever without a word (seen: `num_cpus: 2` on 2
    CPUs sat 11.5 minutes). A cluster can grow, and the capacity guard watches it instead."""
    import ray

    from pipelines import ray_runtime
    from pipelines.config import ConfigError

    if not ray_runtime.embedded():
        return
    total = ray.cluster_resources().get("CPU", 0.0)
    if pool_cpus + io_cpus > total + 1e-9:
        raise ConfigError(
            f"{label}: {setting} ask for {pool_cpus:g} of the embedded Ray's {total:g} CPUs, leaving less than "
            f"the {io_cpus:g} CPU its reads and writes need, so the stage would wait for ever; lower them "
            "(or give the run more CPUs with ray.num_cpus)"
        )


def actor_options() -> dict:
    """Ray remote options of a pool actor (Ray Data's map_batches with a class)."""
    return {"max_restarts": ACTOR_MAX_RESTARTS, "max_task_retries": ACTOR_MAX_TASK_RETRIES}


def train_failure_config(max_failures: int):
    """Ray Train: `max_failures` (train.<arm>.max_failures) worker-group restarts, each from the
    last checkpoint; a lost node counts as one. Preemptions announced by the cloud are
    counted apart by Ray Train (max_preemption_failures, unlimited by default)."""
    from ray.train import FailureConfig

    return FailureConfig(max_failures=max_failures)


def capacity_wait_s() -> float:
    """`ray.capacity_wait_s` of the run's config, as ray_runtime.ensure_ray took it (None: the default).
    Read from ray_runtime, which knows nothing of this module: the imports go one way."""
    from pipelines import ray_runtime

    wait_s = ray_runtime.capacity_wait_s()
    return DEFAULT_CAPACITY_WAIT_S if wait_s is None else wait_s


@contextmanager
def capacity_guard(label: str, progress=None):
    """Run the block; fail it with CapacityLost (naming the lost node) when a node dies and,
    for `capacity_wait_s`, work waits for resources while `progress.done` stays still.

    The watcher interrupts the main thread (SIGINT), which every blocking Ray call answers;
    off the main thread the block runs unwatched. (On an embedded Ray it watches one node,
    which lives as long as the driver: it never fires there.)"""
    import ray

    if not ray.is_initialized() or threading.current_thread() is not threading.main_thread():
        yield
        return
    watcher = _Watcher(label, capacity_wait_s(), progress)
    watcher.start()
    try:
        try:
            yield
        finally:
            watcher.stop()  # after the join, a SIGINT the watcher sent has been raised in here
    except BaseException as error:
        if watcher.failure:
            raise CapacityLost(watcher.failure) from error
        raise


class _Watcher(threading.Thread):
    def __init__(self, label: str, wait_s: float, progress):
        super().__init__(name=f"capacity-guard-{label}", daemon=True)
        self.label, self.wait_s, self.progress = label, wait_s, progress
        self.alive: dict[str, dict] = {}  # node id -> node, as last seen alive
        self.lost: list[dict] = []
        self.starved_since: float | None = None
        self.last_done = None
        self.failure: str | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(POLL_SECONDS):
            try:
                self.check()
            except Exception as error:  # a GCS hiccup: look again next time
                log.warning("capacity guard: %s", error)
            if self.failure:
                self.interrupt_main()
                return

    def interrupt_main(self) -> None:
        """SIGINT the main thread; if it is still in the stage after STOP_GRACE_S (a blocking
        call inside Ray Data can swallow the interrupt: seen with every worker node gone), end
        the process with the failure said, rather than hang."""
        from pipelines.progress import note

        note(f"CapacityLost: {self.failure}")
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        if not self.stopping.wait(STOP_GRACE_S):
            note(f"CapacityLost: the stage did not stop within {STOP_GRACE_S:g} s of its interrupt; exiting")
            sys.stderr.flush()
            os._exit(1)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)

    def check(self) -> None:
        import ray

        for node in ray.nodes():
            if node["Alive"]:
                self.alive[node["NodeID"]] = node
            elif node["NodeID"] in self.alive and node.get("DeathReason") not in HARMLESS_DEATHS:
                self.lost.append({**self.alive.pop(node["NodeID"]), "lost_at": time.time(), "death": node})
                note_lost(self.label, self.lost[-1])
        if not self.lost:
            return
        done = getattr(self.progress, "done", None)
        waiting = no_compute() or pending_demand()
        if not waiting or done != self.last_done:
            self.starved_since, self.last_done = None, done
            return
        self.starved_since = self.starved_since or time.monotonic()
        if time.monotonic() - self.starved_since >= self.wait_s:
            self.failure = explain(self.label, self.lost[-1], waiting, self.wait_s)


def pending_demand() -> list[str]:
    """Resource requests of tasks, actors and placement groups that no node can take now."""
    import ray
    from ray.autoscaler.v2.sdk import get_cluster_status

    demands = get_cluster_status(ray.get_runtime_context().gcs_address).resource_demands
    pending = [*demands.ray_task_actor_demand, *demands.placement_group_demand]
    return [str(request) for demand in pending for request in demand.bundles_by_count]


def no_compute() -> list[str]:
    """['no alive node has a CPU or a GPU'] when none has: every stage's work needs one. (With
    every worker gone, Ray Data submits nothing and a restarting actor may report no demand,
    so the pending demand alone can stay empty while the stage waits for ever.)"""
    import ray

    resources = ray.cluster_resources()
    return [] if resources.get("CPU", 0) or resources.get("GPU", 0) else ["no alive node has a CPU or a GPU"]


def node_label(node: dict) -> str:
    address = node["NodeManagerAddress"]
    return f"{node.get('NodeName') or address} (id {node['NodeID'][:12]}, {address})"


def note_lost(label: str, node: dict) -> None:
    from pipelines.progress import note

    message = node["death"].get("DeathReasonMessage") or "no reason given"
    note(f"{label}: lost node {node_label(node)}: {message}; its work is redone elsewhere")


def explain(label: str, node: dict, waiting: list[str], wait_s: float) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(node["lost_at"]))
    return (
        f"{label}: lost node {node_label(node)} at {when}, and for {wait_s:g} s no node could take "
        f"the work waiting for resources ({', '.join(waiting[:4])}); add capacity (or raise "
        "ray.capacity_wait_s) and run again: finished work is kept and only the rest is redone"
    )
