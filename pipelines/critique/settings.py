"""The `critique:` section: questions, candidate answers, the teacher, filters, exports."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from pipelines.generate.settings import EngineConfig, Sampling
from pipelines.settings import Strict


class Questions(Strict):
    """Which pool rows are questions: the last user turn before the response is the question."""

    sources: list[str] | None = None  # pool sources to draw from; None: every source
    require_reference: bool = False  # only rows with a reference answer
    limit: int | None = Field(default=None, gt=0)  # at most this many, picked by a seeded hash of the id
    seed: int = 0


class StudentSampling(Sampling):
    temperature: float = Field(default=1.0, ge=0)  # noisy answers are the point
    max_tokens: int = Field(default=1024, gt=0)


class Student(Strict):
    """A model that answers each question `sampling.n` times: the candidates."""

    kind: Literal["student"] = "student"
    engine: EngineConfig
    sampling: StudentSampling = StudentSampling()
    system_prompt: str | None = "student_system"  # a built-in name or a file; None: no system turn


class TeacherSampling(Sampling):
    """The CFT paper's teacher sampling: temperature 0.3, top_p 0.95, up to 3,200 new tokens."""

    temperature: float = Field(default=0.3, ge=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_tokens: int = Field(default=3200, gt=0)
    n: Literal[1] = 1  # one critique a candidate


class Teacher(Strict):
    engine: EngineConfig
    sampling: TeacherSampling = TeacherSampling()
    system_prompt: str = "teacher_system"  # a built-in name or a file
    user_prompt: str = "teacher_user"  # must hold {question} and {solution}
    # Constrain the critique (vLLM structured outputs) to at most this many characters and
    # then "Conclusion: right|wrong [END]": for weak local teachers; not for hosted APIs.
    force_conclusion_chars: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _no_regex_beside_forcing(self):
        if self.force_conclusion_chars is not None and self.sampling.regex is not None:
            raise ValueError("give either force_conclusion_chars or sampling.regex, not both")
        return self


class Filters(Strict):
    """The CFT paper's optional filters on the examples built."""

    require_digits_in: list[Literal["question", "solution"]] = []  # drop rows whose text has no digit
    max_solution_chars: int | None = Field(default=None, gt=0)  # drop over-long candidate answers
    drop_longest_solutions: float = Field(default=0.0, ge=0, lt=1)  # fraction dropped, longest first
    drop_shortest_critiques: float = Field(default=0.0, ge=0, lt=1)  # fraction dropped, shortest first


def _candidates_kind(value) -> str:
    """`candidates: pool` is a word; a student is a mapping."""
    return "pool" if isinstance(value, str) else "student"


Candidates = Annotated[
    Annotated[Student, Tag("student")] | Annotated[Literal["pool"], Tag("pool")], Discriminator(_candidates_kind)
]


class CritiqueConfig(Strict):
    questions: Questions = Questions()
    candidates: Candidates  # a student model, or "pool": each question's own response is its candidate
    teacher: Teacher
    filters: Filters = Filters()
    drop_disagreeing: bool = False  # drop critiques whose conclusion contradicts the reference grading
    grading_timeout_s: float = Field(default=5.0, gt=0)  # per candidate answer
    grading_workers: int = Field(default=2, gt=0)  # threads, each with its own math-verify process
    export: list[Literal["parquet", "jsonl", "alpaca", "sharegpt"]] = ["jsonl", "alpaca", "sharegpt"]
