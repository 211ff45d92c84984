"""Models: checkpoints by path or name, and the small-model kit for local runs."""
