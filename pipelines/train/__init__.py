"""Fine-tuning on Ray Train: SFT and CFT arms and warm-up models, each into models/<name>/."""
