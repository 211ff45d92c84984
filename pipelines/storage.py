"""Paths and files for run folders and inputs: local paths or object-store URIs (s3://, gs://).

Everything goes through pyarrow filesystems, so a stage reads and writes the same way on a
laptop and on a cluster: pyarrow's own for local paths, s3:// and gs://, and fsspec's for
any other scheme it knows (az://, hf://, memory://, ...). Credentials come from the
environment (AWS_*, GOOGLE_*, AZURE_*), never from configs. A local path is returned absolute.

`remove` and `move` given `within=RUN` refuse a path outside that run folder before touching
anything (pipelines/fences.py). Atomic writes go to a temporary name unique to the process
and thread, and on a local disk are fsynced (the file, then its folder after the rename), so
a committed manifest survives a power cut as well as a kill.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import uuid
from functools import lru_cache

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines import fences, uris

GLOB_CHARS = re.compile(r"[*?\[]")


def is_uri(location: str) -> bool:
    return "://" in location


@lru_cache(maxsize=64)
def _filesystem_for(scheme_and_host: str) -> pafs.FileSystem:
    try:
        return pafs.FileSystem.from_uri(scheme_and_host)[0]
    except (pa.ArrowInvalid, ValueError):  # no pyarrow filesystem for the scheme: fsspec's, if it has one
        import fsspec

        scheme = scheme_and_host.split("://", 1)[0]
        return pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem(scheme)))


def resolve(location: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a URI (never one with credentials in it)."""
    uris.check(location)
    if not is_uri(location):
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(location))
    scheme, rest = location.split("://", 1)
    if scheme == "file":
        return pafs.LocalFileSystem(), rest
    bucket = rest.split("/", 1)[0]
    return _filesystem_for(f"{scheme}://{bucket}"), rest.rstrip("/")


def join(base: str, *parts: str) -> str:
    if is_uri(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def to_location(template: str, path: str) -> str:
    """Rebuild a location for `path` in the same filesystem as `template`."""
    if is_uri(template):  # some fsspec filesystems list "/bucket/key"; URIs name "bucket/key"
        return f"{template.split('://', 1)[0]}://{path.lstrip('/')}"
    return path


def exists(location: str) -> bool:
    fs, path = resolve(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_dir(location: str) -> bool:
    fs, path = resolve(location)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def make_dirs(location: str) -> None:
    fs, path = resolve(location)
    fs.create_dir(path, recursive=True)


def remove(location: str, within: str | None = None) -> None:
    """Delete a file or a folder tree; nothing happens when it is absent. With `within` (a run
    folder), a location outside it raises fences.PathOutsideRunError instead."""
    if within is not None:
        fences.check_inside(within, location)
    fs, path = resolve(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif info.type == pafs.FileType.File:
        fs.delete_file(path)


def move(source: str, destination: str, within: str | None = None) -> None:
    """Rename a file or folder (atomic on a local disk; copy-then-delete on object stores).
    With `within` (a run folder), both ends must lie inside it."""
    if within is not None:
        fences.check_inside(within, source)
        fences.check_inside(within, destination)
    fs, source_path = resolve(source)
    _, destination_path = resolve(destination)
    fs.create_dir(posixpath.dirname(destination_path), recursive=True)
    if isinstance(fs, pafs.LocalFileSystem) or fs.get_file_info(source_path).type == pafs.FileType.File:
        fs.move(source_path, destination_path)
        return
    for info in _files_under(fs, source_path):  # object stores cannot rename a "folder"
        relative = info.path.lstrip("/")[len(source_path.lstrip("/")) :]
        fs.copy_file(info.path, destination_path + relative)
    fs.delete_dir(source_path)


def list_files(location: str, suffix: str = "", recursive: bool = False) -> list[str]:
    """Sorted locations of the files under a folder ending in `suffix` (none if absent)."""
    fs, path = resolve(location)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=recursive))
    found = [i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(suffix)]
    return sorted(to_location(location, p) for p in found)


TEMPORARY = re.compile(r"\.tmp(-\d+-[0-9a-f]{12})?$")  # _write_atomic's and the appenders' unpublished names


def remove_temporaries(folder: str, within: str) -> list[str]:
    """Delete the unpublished files a killed writer left under `folder` (a SIGKILL skips the
    cleanup in _write_atomic); the removed locations. Only for a folder no writer is using."""
    fences.check_inside(within, folder)
    found = [f for f in list_files(folder, recursive=True) if TEMPORARY.search(f)]
    for location in found:
        remove(location, within=within)
    return found


def file_infos(location: str) -> list[pafs.FileInfo]:
    """FileInfo of every file at or under `location`, expanding glob patterns (** included)."""
    fs, path = resolve(location)
    if not GLOB_CHARS.search(path):
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            return [info]
        if info.type == pafs.FileType.Directory:
            return sorted(_files_under(fs, path), key=lambda i: i.path)
        return []
    static = _static_prefix(path)
    pattern = glob_to_regex(path)
    if fs.get_file_info(static).type != pafs.FileType.Directory:
        return []
    found = (i for i in _files_under(fs, static) if pattern.fullmatch(i.path) or pattern.fullmatch(i.path.lstrip("/")))
    return sorted(found, key=lambda i: i.path)


def _files_under(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    return [i for i in infos if i.type == pafs.FileType.File]


def _static_prefix(path: str) -> str:
    parts = path.split("/")
    for index, part in enumerate(parts):
        if GLOB_CHARS.search(part):
            return "/".join(parts[:index]) or "/"
    return path


def glob_to_regex(pattern: str) -> re.Pattern:
    """`*` and `?` stay inside one folder, `**` crosses folders, `[...]` is a class."""
    out, index = [], 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif char == "*":
            out.append("[^/]*")
            index += 1
        elif char == "?":
            out.append("[^/]")
            index += 1
        elif char == "[" and "]" in pattern[index + 1 :]:
            end = pattern.index("]", index + 1)
            body = pattern[index + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            index = end + 1
        else:
            out.append(re.escape(char))
            index += 1
    return re.compile("".join(out))


def open_input(location: str, compression: str | None = "detect") -> pa.NativeFile:
    """A sequential stream; gzip/bz2/zstd/lz4 are decompressed by file extension."""
    fs, path = resolve(location)
    return fs.open_input_stream(path, compression=compression)


def open_random_access(location: str) -> pa.NativeFile:
    fs, path = resolve(location)
    return fs.open_input_file(path)


def read_json(location: str):
    with open_input(location, compression=None) as stream:
        return json.loads(stream.read().decode("utf-8"))


def write_json_atomic(document, location: str) -> None:
    write_bytes_atomic(json.dumps(document, indent=2, sort_keys=True, default=str).encode("utf-8"), location)


def write_bytes_atomic(data: bytes, location: str) -> None:
    _write_atomic(location, lambda fs, path: _write_bytes(fs, path, data))


def write_parquet_atomic(table: pa.Table, location: str, row_group_size: int = 65_536) -> None:
    def write(fs, path):
        with fs.open_output_stream(path) as stream:
            pq.write_table(table, stream, compression="zstd", row_group_size=row_group_size)

    _write_atomic(location, write)


class ParquetAppender:
    """Tables appended to one Parquet file as row groups, published by a rename on close.

    Nothing is created until the first write; a file left by a killed writer keeps its
    temporary name, which no reader lists, and the next attempt overwrites it.
    """

    def __init__(self, location: str, schema: pa.Schema, **options):
        """`options` go to pyarrow's ParquetWriter (e.g. bloom_filter_options)."""
        self.location, self.schema, self.writer, self.rows = location, schema, None, 0
        self.options = options

    def write(self, table: pa.Table, row_group_size: int | None = None) -> None:
        if self.writer is None:
            self.fs, self.path = resolve(self.location)
            self.fs.create_dir(posixpath.dirname(self.path), recursive=True)
            self.stream = self.fs.open_output_stream(f"{self.path}.tmp")
            self.writer = pq.ParquetWriter(self.stream, self.schema, compression="zstd", **self.options)
        self.writer.write_table(table, row_group_size=row_group_size)
        self.rows += table.num_rows

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        self.stream.close()  # the writer leaves a stream it was given open; S3 commits on close
        _sync_file(self.fs, f"{self.path}.tmp")
        self.fs.move(f"{self.path}.tmp", self.path)
        _sync_folder(self.fs, self.path)


def _write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    with fs.open_output_stream(path) as stream:
        stream.write(data)


def _write_atomic(location: str, write) -> None:
    """Write to a sibling temporary name, then rename: readers never see half a file. The name
    is unique to this process and thread (threads of one actor write beside each other)."""
    fs, path = resolve(location)
    fs.create_dir(posixpath.dirname(path), recursive=True)
    temporary = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        write(fs, temporary)
        _sync_file(fs, temporary)
        fs.move(temporary, path)
    except BaseException:
        if fs.get_file_info(temporary).type == pafs.FileType.File:
            fs.delete_file(temporary)
        raise
    _sync_folder(fs, path)


def _sync_file(fs: pafs.FileSystem, path: str) -> None:
    """Flush a written local file to the disk (object stores are durable once a stream closes)."""
    if isinstance(fs, pafs.LocalFileSystem):
        _fsync(path, os.O_RDONLY)


def _sync_folder(fs: pafs.FileSystem, path: str) -> None:
    """Flush the folder entry a rename made, so the renamed file is there after a power cut."""
    if isinstance(fs, pafs.LocalFileSystem):
        _fsync(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)


def _fsync(path: str, flags: int) -> None:
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
