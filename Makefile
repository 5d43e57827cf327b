# flame: the two quick-start commands are `make demo` and `make test`.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
# ccache must accept precompiled headers.
export CCACHE_SLOPPINESS := pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_MAXSIZE ?= 5G
# Paths relative to the checkout, so a second clone (CI's) hits the same cache.
export CCACHE_BASEDIR := $(CURDIR)

.PHONY: all setup configure build test test-python install-python demo bench format clean

all: build

setup:
	@./scripts/setup

# Ninja rebuilds only what changed: with Makefiles, every re-configure rewrote
# flags.make and so rebuilt the 640 MB torch PCH and every object after it.
# A build directory made by another generator is replaced.
configure: setup
	@if [ -f $(BUILD_DIR)/CMakeCache.txt ] && ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$$' $(BUILD_DIR)/CMakeCache.txt; then \
	  rm -rf $(BUILD_DIR); fi
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) > $(BUILD_DIR).configure.log 2>&1 || \
	  (cat $(BUILD_DIR).configure.log; exit 1)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

# The C++ tests (ctest), then the Python module's (pytest).
test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 900
	$(MAKE) --no-print-directory test-python

test-python:
	PYTHONPATH=$(abspath $(BUILD_DIR))/python FLAME_BUILD_DIR=$(abspath $(BUILD_DIR)) OMP_NUM_THREADS=1 \
	  .venv/bin/python -m pytest -q -p no:cacheprovider tests/python

# `import flame` in the .venv's Python from anywhere: a .pth naming the build's
# package folder (as `pip install -e`), so each rebuild is seen at once.
install-python: build
	@site=$$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
	  echo "$(abspath $(BUILD_DIR))/python" > "$$site/flame.pth" && \
	  echo "install-python: $$site/flame.pth -> $(abspath $(BUILD_DIR))/python"

demo: build
	./scripts/demo

bench: build
	@./scripts/setup
	cmake --build $(BUILD_DIR) --target benchmarks -j $(JOBS)
	./scripts/bench

format:
	clang-format -i $$(git ls-files '*.cpp' '*.h')

clean:
	rm -rf $(BUILD_DIR) $(BUILD_DIR).configure.log
