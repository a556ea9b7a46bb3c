# Thin wrapper over CMake: `make` builds into build/, `make demo` and `make check` install
# what is missing first (scripts/setup.sh), then build and run.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all build demo check setup clean format format-check

all: build

setup:
	@bash scripts/setup.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

demo: setup build
	@bash scripts/demo.sh

check: setup build
	cd $(BUILD) && ctest --output-on-failure -j 2

clean:
	rm -rf $(BUILD) build-asan
