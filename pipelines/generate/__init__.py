"""Generation engines shared by candidates, critiques and evaluation: vLLM actors, OpenAI-compatible endpoints."""
