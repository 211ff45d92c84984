"""Ingest's plan: which units of work make the pool, and how many dedupe buckets.

A unit is one input file, or one block of generated rows. The plan is a pure function of
the config and of the input files' names, sizes and modification times, so a resumed run
sees the same units under the same keys.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass

from pipelines import fences, storage
from pipelines.ingest import adapters, conversations, readers
from pipelines.ingest.settings import ConversationsSource, FileSource, IngestConfig, MathematicsSource

GENERATED_ROW_BYTES = 200  # a generated math row's size, for sizing buckets
CONVERSATION_ROW_BYTES = 1_500  # a generated conversation staged: 1,370 bytes of text on average, and its meta
MAX_BUCKETS = 4096


@dataclass(frozen=True)
class Unit:
    index: int
    source: str
    kind: str  # "file", "mathematics" or "conversations"
    location: str = ""
    container: str = ""
    format: str = ""  # "" when no row of the file could be read to detect it
    start: int = 0
    stop: int = 0
    generator: str = ""  # a generated source's settings (and corpus files), JSON
    max_rows: int = 0  # a file unit reads at most this many records (0: all)

    @property
    def key(self) -> str:
        return f"u-{self.index:06d}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Unit:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Plan:
    units: list[Unit]
    buckets: int
    inputs: list  # [location, size, mtime_ns] per input file
    missing_sources: list[str]  # optional sources whose paths matched nothing


class InputError(ValueError):
    pass


def make_plan(config: IngestConfig) -> Plan:
    units, inputs, missing, total_bytes = [], [], [], 0
    for source in config.sources:
        if isinstance(source, MathematicsSource):
            units += _generated_units(source, config.rows_per_unit, len(units))
            total_bytes += source.rows * GENERATED_ROW_BYTES
            continue
        if isinstance(source, ConversationsSource):
            corpus, corpus_inputs = _corpus(source)
            exclude, exclude_inputs = _excluded(source)
            units += _generated_units(source, config.rows_per_unit, len(units), (corpus, exclude))
            inputs += exclude_inputs
            inputs += corpus_inputs
            total_bytes += source.rows * CONVERSATION_ROW_BYTES
            continue
        files = _data_files(source)
        if not files:
            if source.optional:
                missing.append(source.name)
                continue
            raise InputError(f"source {source.name!r}: {source.paths} matched no data files")
        for location, container, info in files:
            if source.format == "auto":
                fmt = _detect(source.name, location, container)
            else:
                fmt = source.format
                _check_readable(source.name, location)
            limit = source.max_rows_per_file or 0
            units.append(Unit(len(units), source.name, "file", location, container, fmt, max_rows=limit))
            inputs.append([location, info.size, info.mtime_ns])
            total_bytes += info.size or 0
    buckets = min(MAX_BUCKETS, max(1, math.ceil(total_bytes / config.bucket_bytes)))
    return Plan(units=units, buckets=buckets, inputs=inputs, missing_sources=missing)


def _detect(source: str, location: str, container: str) -> str:
    """The format of a file from its columns; "" for a file with no row to adapt (empty, or
    every row unreadable), which the map step turns into rejects like any other bad row."""
    try:
        columns = readers.sample_columns(location, container)
    except OSError as error:  # unreadable: a user's mistake to fix, not a row to reject
        raise InputError(f"source {source!r}: cannot read {location}: {_reason(error)}") from None
    return "" if columns is None else adapters.detect(columns, location)


def _check_readable(source: str, location: str) -> None:
    try:
        with storage.open_input(location, compression=None) as stream:
            stream.read(1)
    except OSError as error:
        raise InputError(f"source {source!r}: cannot read {location}: {_reason(error)}") from None


def _reason(error: OSError) -> str:
    """ "Permission denied", not pyarrow's "[Errno 13] Failed to open local file ... Detail: ..."."""
    return os.strerror(error.errno) if error.errno else str(error)


def _generated_units(source, rows_per_unit: int, first_index: int, corpus: tuple | None = None) -> list[Unit]:
    settings = source.model_dump(mode="json")
    if corpus is not None:  # the workers read the files the plan fingerprinted
        settings["corpus_files"], settings["exclude_files"] = ([asdict(f) for f in files] for files in corpus)
    starts = range(0, source.rows, rows_per_unit)
    return [
        Unit(
            first_index + n,
            source.name,
            source.kind,
            start=start,
            stop=min(start + rows_per_unit, source.rows),
            generator=json.dumps(settings, sort_keys=True),
        )
        for n, start in enumerate(starts)
    ]


def _corpus(source: ConversationsSource) -> tuple[list[conversations.CorpusFile], list]:
    """The corpus files, their formats and sha256, refused past max_corpus_bytes; and their
    [location, size, sha256] for the ingest identity (a changed corpus makes other rows)."""
    files = _data_files(FileSource(kind="files", name=source.name, paths=source.corpus))
    if not files:
        raise InputError(f"source {source.name!r}: corpus {source.corpus} matched no data files")
    size = sum(info.size or 0 for _, _, info in files)
    if size > source.max_corpus_bytes:
        raise InputError(
            f"source {source.name!r}: the corpus holds {size:,} bytes, over max_corpus_bytes "
            f"({source.max_corpus_bytes:,}): every worker holds it whole"
        )
    corpus, inputs = [], []
    for location, container, info in files:
        fmt = _detect(source.name, location, container)
        if not fmt:
            raise InputError(f"source {source.name!r}: corpus file {location} has no row to read")
        digest = conversations.fingerprint(location)
        corpus.append(conversations.CorpusFile(location, container, fmt, digest))
        inputs.append([location, info.size, f"sha256:{digest}"])
    return corpus, inputs


def _excluded(source: ConversationsSource) -> tuple[list[conversations.CorpusFile], list]:
    """The benchmark files whose questions the corpus must not give rows, fingerprinted too."""
    found, inputs = [], []
    for location in source.exclude:
        infos = storage.file_infos(location) if not storage.GLOB_CHARS.search(location) else []
        container = readers.container_of(location)
        if len(infos) != 1 or container is None:
            raise InputError(f"source {source.name!r}: exclude {location} is not one JSON Lines, JSON or Parquet file")
        digest = conversations.fingerprint(location)
        found.append(conversations.CorpusFile(location, container, "auto", digest))
        inputs.append([location, infos[0].size, f"sha256:{digest}"])
    return found, inputs


def _data_files(source: FileSource) -> list[tuple[str, str, object]]:
    """(location, container, FileInfo) for every data file the source names, sorted."""
    found: dict[str, tuple[str, str, object]] = {}
    for pattern in source.paths:
        hf_files = _hf_dataset_files(pattern, source.hf_splits)
        if hf_files is not None:
            for location, info in hf_files:
                found[location] = (location, "arrow", info)
            continue
        names_one_file = not storage.GLOB_CHARS.search(pattern) and not storage.is_dir(pattern)
        for info in storage.file_infos(pattern):
            location = storage.to_location(pattern, info.path)
            container = readers.container_of(location)
            if container is not None:
                found[location] = (location, container, info)
            elif names_one_file:  # folders and globs skip what is not data (READMEs, ...)
                known = ", ".join(readers.CONTAINERS)
                raise InputError(f"source {source.name!r}: {location} is not a data file ({known}, compressed too)")
    return [found[key] for key in sorted(found)]


def _hf_dataset_files(location: str, splits: list[str] | None):
    """The Arrow files of a folder saved by `datasets` (Dataset or DatasetDict), else None."""
    if storage.GLOB_CHARS.search(location) or not storage.is_dir(location):
        return None
    if storage.exists(storage.join(location, "dataset_dict.json")):
        available = _hf_metadata(location, "dataset_dict.json")["splits"]
        unknown = sorted(set(splits or []) - set(available))
        if unknown:
            raise InputError(f"{location}: no splits {unknown}; the dataset has {available}")
        return [f for split in (splits or available) for f in _hf_split_files(_hf_inside(location, split))]
    if storage.exists(storage.join(location, "state.json")):
        return _hf_split_files(location)
    return None


def _hf_split_files(folder: str):
    state = _hf_metadata(folder, "state.json")
    locations = [_hf_inside(folder, entry["filename"]) for entry in state["_data_files"]]
    infos = [(loc, storage.file_infos(loc)) for loc in locations]
    missing = [loc for loc, found in infos if not found]
    if missing:
        raise InputError(f"{folder}/state.json names files that are not there: {', '.join(missing)}")
    return [(loc, found[0]) for loc, found in infos]


HF_METADATA_BYTES = 1 << 20  # state.json and dataset_dict.json: a few KB in a real save


def _hf_metadata(folder: str, name: str) -> dict:
    """A dataset folder's metadata file, refused past HF_METADATA_BYTES rather than read whole."""
    location = storage.join(folder, name)
    infos = storage.file_infos(location)
    if not infos:  # a split that dataset_dict.json names but that holds no state.json
        raise InputError(f"{location}: not there; the folder is not a dataset saved by `datasets`")
    size = infos[0].size or 0
    if size > HF_METADATA_BYTES:
        raise InputError(f"{location}: {size:,} bytes, not the small metadata file `datasets` writes")
    return storage.read_json(location)


def _hf_inside(folder: str, entry: str) -> str:
    """A split or data file the metadata names, refused unless it lies inside the dataset
    folder: a saved dataset from elsewhere must not make ingest read (and keep) other files."""
    location = storage.join(folder, entry)
    try:
        return fences.check_inside(folder, location)
    except fences.PathOutsideRunError:
        raise InputError(f"{folder}: its metadata names {entry!r}, outside the dataset folder") from None
