"""Run folder layout and the stage contract: skip, resume, atomic commit, manifests.

A run folder holds one table a folder (`pool/`, `rejects/<stage>/`, `scores/<name>/`, ...).
A stage works inside `_work/<stage>/`, which survives a kill: finished units are marked
there and reused by the next attempt when the stage's identity (config hash, input
fingerprints, code version) is unchanged. Commit moves the outputs into place and writes
`_SUCCESS.json` into the stage's primary table last, so its presence means "finished".

Every folder a stage run clears or moves onto is first checked to lie inside the run folder
(pipelines/fences.py): a table or stage name that climbs out with `..` fails before anything
is deleted.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

from pipelines import __version__, fences, storage

MANIFEST = "_SUCCESS.json"


def stable_hash(document) -> str:
    """sha256 of a JSON document with sorted keys: the same config gives the same hash."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stage_identity(stage: str, config: dict, inputs: dict, stage_version: int) -> dict:
    """What decides whether a finished stage can be reused."""
    return {
        "stage": stage,
        "config_hash": stable_hash(config),
        "inputs_hash": stable_hash(inputs),
        "code_version": f"{__version__}+{stage}.{stage_version}",
    }


@dataclass
class StageRun:
    """One stage in one run folder."""

    run_dir: str
    stage: str
    primary_table: str  # where _SUCCESS.json lives, e.g. "pool"
    identity: dict
    started: float = field(default_factory=time.time)
    started_cpu: float = field(default_factory=time.process_time)

    def __post_init__(self):
        """Refuse a stage whose own folders would lie outside the run folder, before any use."""
        self.table_location(self.primary_table)
        fences.check_inside(storage.join(self.run_dir, "_work"), self.work_dir)

    @property
    def work_dir(self) -> str:
        return storage.join(self.run_dir, "_work", self.stage)

    def table_location(self, table: str) -> str:
        """RUN/<table>; PathOutsideRunError when the name climbs out of the run folder."""
        return fences.check_inside(self.run_dir, storage.join(self.run_dir, *table.split("/")))

    @property
    def manifest_location(self) -> str:
        return storage.join(self.table_location(self.primary_table), MANIFEST)

    def finished(self) -> dict | None:
        """The manifest of an earlier finished run of this very stage, if there is one."""
        if not storage.exists(self.manifest_location):
            return None
        manifest = storage.read_json(self.manifest_location)
        return manifest if manifest.get("identity") == self.identity else None

    def open_work(self) -> bool:
        """Prepare `_work/<stage>`; True when an earlier attempt's finished units are reused."""
        marker = storage.join(self.work_dir, "identity.json")
        if storage.exists(marker) and storage.read_json(marker) == self.identity:
            return True
        storage.remove(self.work_dir, within=self.run_dir)
        storage.write_json_atomic(self.identity, marker)
        return False

    def unit_done(self, key: str) -> dict | None:
        location = storage.join(self.work_dir, "done", f"{key}.json")
        return storage.read_json(location) if storage.exists(location) else None

    def commit(self, outputs: dict[str, str], manifest: dict) -> dict:
        """Move each `table -> work location` into place, then write the manifest last."""
        finals = {table: self.table_location(table) for table in outputs}  # every name checked before a delete
        storage.remove(self.manifest_location, within=self.run_dir)
        for table, location in outputs.items():
            storage.remove_temporaries(location, within=self.run_dir)  # a killed attempt's half-written files
            storage.remove(finals[table], within=self.run_dir)
            storage.move(location, finals[table], within=self.run_dir)
        manifest = {
            "stage": self.stage,
            "identity": self.identity,
            "outputs": sorted(outputs),
            "wall_seconds": round(time.time() - self.started, 3),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **manifest,
        }
        manifest.setdefault("gpu_seconds", 0.0)
        storage.write_json_atomic(manifest, self.manifest_location)
        storage.remove(self.work_dir, within=self.run_dir)
        work_root = storage.join(self.run_dir, "_work")
        if not storage.list_files(work_root, recursive=True):
            storage.remove(work_root, within=self.run_dir)  # no other stage is mid-way
        return manifest

    def driver_cpu_seconds(self) -> float:
        return time.process_time() - self.started_cpu


def mark_unit_done(work_dir: str, key: str, stats: dict) -> None:
    """Called by a worker after its unit's outputs are in place: the unit is now reusable."""
    storage.write_json_atomic(stats, storage.join(work_dir, "done", f"{key}.json"))


def read_manifest(run_dir: str, table: str) -> dict | None:
    location = storage.join(run_dir, *table.split("/"), MANIFEST)
    return storage.read_json(location) if storage.exists(location) else None
