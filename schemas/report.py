"""The results table the report stage writes: one row per arm and benchmark."""

import pyarrow as pa

# Accuracy and its comparison with the baseline arm; shared with eval_summary (schemas/evaluate.py).
INTERVAL = [
    pa.field("accuracy_low", pa.float64(), nullable=False),  # 95%: Wilson (one run), two-level bootstrap (seeds)
    pa.field("accuracy_high", pa.float64(), nullable=False),
]
COMPARISON = [
    pa.field("baseline", pa.string()),  # the arm compared with (evaluate.baseline); null: none
    pa.field("difference", pa.float64()),  # accuracy - the baseline's, on the questions both answered
    pa.field("difference_low", pa.float64()),  # 95% paired bootstrap (two-level when both arms have 2+ seeds)
    pa.field("difference_high", pa.float64()),
    pa.field("p_value", pa.float64()),  # exact sign-flip test on per-question seed means
    pa.field("p_holm", pa.float64()),  # Holm-adjusted over every comparison in the table
    pa.field("significant", pa.bool_()),  # p_holm < alpha (and, seeded, the interval excludes 0); null for the baseline
    pa.field("verdict", pa.string(), nullable=False),  # in words: "no significant difference from X (p = 0.47)"
]

RESULTS = pa.schema(
    [
        pa.field("arm", pa.string(), nullable=False),  # seeds pooled: <arm>@s<seed> runs are one row
        pa.field("method", pa.string(), nullable=False),  # base, SFT or CFT
        pa.field("selection", pa.string()),  # the selection an SFT arm trained on
        pa.field("data", pa.string()),  # the arm's data reference (selection:NAME, cft, a path)
        pa.field("benchmark", pa.string(), nullable=False),
        pa.field("n", pa.int64(), nullable=False),  # questions
        pa.field("runs", pa.int64(), nullable=False),  # evaluated runs: 1, or the arm's seeds
        pa.field("correct", pa.int64(), nullable=False),  # right answers, over every run
        pa.field("accuracy", pa.float64(), nullable=False),  # mean over the runs
        *INTERVAL,  # over every (run, question) answer
        pa.field("accuracy_seed_sd", pa.float64()),  # standard deviation across seeds; null for one run
        *COMPARISON,
        pa.field("detectable_difference", pa.float64()),  # smallest change from the baseline found with 80% power
        pa.field("data_seconds", pa.float64(), nullable=False),  # building the arm's data: scores, selection, critiques
        pa.field("train_seconds", pa.float64(), nullable=False),  # one run (the mean over seeds)
        pa.field("compute_seconds", pa.float64(), nullable=False),  # data + train (evaluation not included)
        pa.field("cpu_hours", pa.float64(), nullable=False),  # the same, in CPU-hours (process CPU time)
        pa.field("gpu_hours", pa.float64(), nullable=False),
    ]
)
