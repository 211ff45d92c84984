"""Report: the results table, PNG plots and one self-contained HTML page per run."""
