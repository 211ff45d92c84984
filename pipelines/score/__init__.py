"""Scoring: one table per scorer under scores/, every row keyed by the pool's `id`."""
