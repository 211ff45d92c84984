"""Entry points for `ray job submit`: parse --config, call the pipeline."""
