"""Evaluation: benchmarks, prompts, answer extraction, grading, and the evaluate stage (docs/evaluation.md)."""
