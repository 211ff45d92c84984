import pyarrow as pa
import pytest

import schemas
from pipelines.score import render

ROWS = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
    [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
    [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": "Ünïcödé A2"},
    ],
]


def column(rows):
    return pa.array(rows, type=schemas.SCHEMAS["pool"].field("messages").type)


@pytest.mark.parametrize("mode", render_modes := ["conversation", "prompt", "response", "json"])
def test_arrow_rendering_equals_python_rendering_also_on_slices(mode):
    expected = [render.render(render.turns_of(r), mode) for r in ROWS]
    assert render.render_column(column(ROWS), mode).to_pylist() == expected
    assert render.render_column(column(ROWS).slice(1), mode).to_pylist() == expected[1:]
    chunked = pa.chunked_array([column(ROWS[:1]), column(ROWS[1:])])
    assert render.render_column(chunked, mode).to_pylist() == expected


def test_the_forms():
    turns = render.turns_of(ROWS[2])
    assert render.render(turns, "conversation") == "User: Q1\n\nAssistant: A1\n\nUser: Q2\n\nAssistant: Ünïcödé A2"
    assert render.render(turns, "prompt") == "User: Q1\n\nAssistant: A1\n\nUser: Q2"
    assert render.render(turns, "response") == "Ünïcödé A2"
    assert render.render(render.turns_of(ROWS[1]), "response") == ""
