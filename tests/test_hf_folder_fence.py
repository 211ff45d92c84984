"""A folder saved by `datasets` names its files and splits in its own metadata: a saved
dataset from elsewhere must not make ingest read files outside it, and its metadata is not
read whole whatever its size."""

from __future__ import annotations

import json

import pytest

from pipelines.ingest import plan
from pipelines.ingest.plan import InputError


def _saved(folder, filename: str) -> None:
    folder.mkdir(parents=True)
    (folder / "data-00000-of-00001.arrow").write_bytes(b"")
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": filename}]}))


def test_a_data_file_inside_the_folder_is_listed(tmp_path):
    _saved(tmp_path / "ds", "data-00000-of-00001.arrow")
    [(location, info)] = plan._hf_dataset_files(str(tmp_path / "ds"), None)
    assert location.endswith("ds/data-00000-of-00001.arrow") and info.size == 0


@pytest.mark.parametrize("filename", ["../secret.arrow", "/etc/passwd"])
def test_a_data_file_outside_the_folder_is_refused(tmp_path, filename):
    (tmp_path / "secret.arrow").write_bytes(b"not yours")
    _saved(tmp_path / "ds", filename)
    with pytest.raises(InputError, match="outside the dataset folder"):
        plan._hf_dataset_files(str(tmp_path / "ds"), None)


def test_a_split_outside_the_folder_is_refused(tmp_path):
    _saved(tmp_path / "elsewhere", "data-00000-of-00001.arrow")
    (tmp_path / "dd").mkdir()
    (tmp_path / "dd" / "dataset_dict.json").write_text(json.dumps({"splits": ["../elsewhere"]}))
    with pytest.raises(InputError, match="outside the dataset folder"):
        plan._hf_dataset_files(str(tmp_path / "dd"), None)


def test_missing_files_and_huge_metadata_are_clear_errors(tmp_path):
    _saved(tmp_path / "ds", "gone.arrow")
    with pytest.raises(InputError, match="names files that are not there"):
        plan._hf_dataset_files(str(tmp_path / "ds"), None)
    (tmp_path / "ds" / "state.json").write_bytes(b" " * (plan.HF_METADATA_BYTES + 1))
    with pytest.raises(InputError, match="not the small metadata file"):
        plan._hf_dataset_files(str(tmp_path / "ds"), None)


def test_a_split_without_its_state_json_is_a_clear_error(tmp_path):
    (tmp_path / "dd" / "train").mkdir(parents=True)
    (tmp_path / "dd" / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    with pytest.raises(InputError, match="train/state.json: not there"):
        plan._hf_dataset_files(str(tmp_path / "dd"), None)
