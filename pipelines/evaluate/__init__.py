"""Evaluation: answer extraction and grading (more arrives with the evaluate stage)."""
