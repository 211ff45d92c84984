"""The `critique:` section and the engine settings: defaults, and errors that name the key."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipelines.critique.settings import CritiqueConfig
from pipelines.generate.settings import OpenAIEngineConfig, VllmEngineConfig, output_settings

VLLM = {"kind": "vllm", "model": "tiny"}


def test_defaults_are_the_papers():
    section = CritiqueConfig.model_validate({"candidates": "pool", "teacher": {"engine": VLLM}})
    sampling = section.teacher.sampling
    assert (sampling.temperature, sampling.top_p, sampling.max_tokens, sampling.n) == (0.3, 0.95, 3200, 1)
    assert section.teacher.system_prompt == "teacher_system" and section.candidates == "pool"
    teacher = {"engine": VLLM, "sampling": {"max_tokens": 99}}
    partial = CritiqueConfig.model_validate({"candidates": "pool", "teacher": teacher})
    assert partial.teacher.sampling.temperature == 0.3  # overriding one key keeps the paper's others
    candidates = {"engine": VLLM, "sampling": {"n": 4}}
    student = CritiqueConfig.model_validate({"candidates": candidates, "teacher": {"engine": VLLM}})
    assert student.candidates.sampling.n == 4 and student.candidates.system_prompt == "student_system"


@pytest.mark.parametrize(
    ("section", "where"),
    [
        ({"candidates": "pol", "teacher": {"engine": VLLM}}, ("candidates", "pool")),
        ({"candidates": "pool", "teacher": {"engine": VLLM, "sampling": {"n": 2}}}, ("teacher", "sampling", "n")),
        ({"candidates": "pool", "teacher": {"engine": {**VLLM, "kind": "vlm"}}}, ("teacher", "engine")),
        ({"candidates": "pool", "teacher": {"engine": VLLM, "force_conclusion_chars": 9,
          "sampling": {"regex": "x"}}}, ("teacher",)),
        ({"candidates": "pool", "teacher": {"engine": VLLM}, "filters": {"drop_shortest_critiques": 1.0}},
         ("filters", "drop_shortest_critiques")),
        ({"candidates": "pool", "teacher": {"engine": VLLM}, "export": ["csv"]}, ("export", 0)),
    ],
)  # fmt: skip
def test_bad_sections_name_the_key(section, where):
    with pytest.raises(ValidationError) as caught:
        CritiqueConfig.model_validate(section)
    assert any(error["loc"][: len(where)] == where for error in caught.value.errors()), caught.value.errors()


def test_engine_settings():
    with pytest.raises(ValidationError, match="tensor_parallel_size"):
        VllmEngineConfig(kind="vllm", model="m", tensor_parallel_size=4, num_gpus=2)
    engine = OpenAIEngineConfig(kind="openai", base_url="http://a:1/v1", model="m", max_in_flight=64)
    moved = engine.model_copy(update={"base_url": "http://b:2/v1", "max_in_flight": 2})
    assert output_settings(engine) == output_settings(moved)  # where and how fast are not outputs
    assert output_settings(engine) != output_settings(engine.model_copy(update={"model": "other"}))
