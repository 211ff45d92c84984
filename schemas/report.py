"""The results table the report stage writes: one row per arm and benchmark."""

import pyarrow as pa

RESULTS = pa.schema(
    [
        pa.field("arm", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),  # base, SFT or CFT
        pa.field("selection", pa.string()),  # the selection an SFT arm trained on
        pa.field("data", pa.string()),  # the arm's data reference (selection:NAME, cft, a path)
        pa.field("benchmark", pa.string(), nullable=False),
        pa.field("n", pa.int64(), nullable=False),
        pa.field("accuracy", pa.float64(), nullable=False),
        pa.field("data_seconds", pa.float64(), nullable=False),  # building the arm's data: scores, selection, critiques
        pa.field("train_seconds", pa.float64(), nullable=False),
        pa.field("compute_seconds", pa.float64(), nullable=False),  # data + train (evaluation not included)
    ]
)
