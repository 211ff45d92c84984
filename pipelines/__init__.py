"""Winnow: score, select, critique, train and evaluate instruction-tuning data on Ray."""

__version__ = "0.1.0"
