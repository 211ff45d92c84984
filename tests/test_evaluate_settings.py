"""The `evaluate:` config section: benchmark kinds, defaults and clear errors."""

import pytest
from pydantic import ValidationError

from pipelines.evaluate.settings import ARM_MODEL, EvaluateConfig, FileBenchmark, MathematicsBenchmark

ENGINE = {"kind": "vllm"}


def test_files_need_no_kind_and_the_engine_needs_no_model():
    section = EvaluateConfig.model_validate(
        {
            "benchmarks": [{"name": "gsm8k", "path": "s3://bucket/gsm8k.jsonl"}, {"kind": "mathematics", "rows": 50}],
            "engine": ENGINE,
        }
    )
    first, second = section.benchmarks
    assert isinstance(first, FileBenchmark) and first.format == "auto"
    assert isinstance(second, MathematicsBenchmark) and second.name == "mathematics_heldout"
    assert second.heldout_fraction == 0.05  # the ingest source's default: the splits stay disjoint
    assert section.engine.model == ARM_MODEL
    assert (section.max_tokens, section.grading_timeout_s) == (2048, 5.0)


@pytest.mark.parametrize(
    "benchmarks,message",
    [
        ([{"name": "a", "path": "x", "colour": "red"}], "colour"),
        ([{"name": "a", "path": "x", "format": "csv"}], "format"),
        ([{"name": "a", "path": "x"}, {"name": "a", "path": "y"}], "repeated: ['a']"),
        ([{"kind": "mathematics", "rows": 5, "modules": ["nope"]}], "unknown modules"),
        ([], "at least 1"),
    ],
)
def test_bad_sections_name_the_problem(benchmarks, message):
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        EvaluateConfig.model_validate({"benchmarks": benchmarks, "engine": ENGINE})
