"""Critique Fine-Tuning data: prompts, candidates, critiques and CFT examples."""
