# Thin wrapper over CMake: `make` builds into build/ (programs in build/bin/), `make demo` and
# `make check` install what is missing first (scripts/setup.sh), then build and run.
#
#   make / make build   configure (RelWithDebInfo) and build into build/
#   make demo           setup, build, run scripts/demo.sh
#   make check          setup, build, ASan+UBSan build, every ctest test in build/ (unit +
#                       e2e), every ctest test again in build-asan/ under the sanitizers,
#                       format-check
#   make test           ctest in build/ (unit + e2e)
#   make asan           unit and e2e tests under ASan+UBSan+LSan in build-asan/ (the e2e
#                       tests run the sanitized programs and fail on any sanitizer report)
#   make tsan           the unit tests under TSan in build-tsan/ (not part of check)
#   make bench          setup, build, run the benchmarks (bench/report.sh: about 8 minutes on
#                       2 cores) and write bench/REPORT.md with its plots in bench/plots/
#   make format         clang-format -i on every .c/.h under src include examples tests bench
#   make format-check   fail, listing the files that `make format` would change
#   make install PREFIX=/usr/local
BUILD ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
PREFIX ?= /usr/local
JOBS ?= $(shell nproc)
CTEST_JOBS ?= 2
CLANG_FORMAT ?= clang-format
CMAKE_FLAGS ?=

FORMAT_DIRS := $(wildcard src include examples tests bench)
FORMAT_FILES = $(if $(FORMAT_DIRS),$(shell find $(FORMAT_DIRS) -name '*.[ch]' -type f | sort))

SAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
TSAN_ENV = TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1

.PHONY: all build demo check setup test asan build-asan test-asan tsan build-tsan install \
	format format-check check-clang-format clean help bench

all: build

setup:
	@bash scripts/setup.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSL_SANITIZE=ON \
		$(CMAKE_FLAGS) >/dev/null

$(TSAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSL_TSAN=ON \
		$(CMAKE_FLAGS) >/dev/null

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

demo: setup
	@$(MAKE) --no-print-directory build
	@bash scripts/demo.sh

# Steps run one after another even under `make -j`.
check: setup
	@$(MAKE) --no-print-directory build
	@$(MAKE) --no-print-directory build-asan
	@$(MAKE) --no-print-directory test
	@$(MAKE) --no-print-directory test-asan
	@$(MAKE) --no-print-directory format-check

test:
	cd $(BUILD) && ctest --output-on-failure -j $(CTEST_JOBS)

# Everything: the e2e tests need the example programs and, for test_install, the libraries.
build-asan: $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)

test-asan:
	cd $(ASAN_BUILD) && $(SAN_ENV) ctest --output-on-failure -j $(CTEST_JOBS) -L 'unit|e2e'

asan: build-asan
	@$(MAKE) --no-print-directory test-asan

build-tsan: $(TSAN_BUILD)/CMakeCache.txt
	cmake --build $(TSAN_BUILD) -j $(JOBS) --target unit_tests

tsan: build-tsan
	cd $(TSAN_BUILD) && $(TSAN_ENV) ctest --output-on-failure -j $(CTEST_JOBS) -L unit

# The performance report: BENCH_QUICK=1 for a smoke run; sizes: see bench/report.sh. Builds
# only the programs it runs (RelWithDebInfo, in build/).
BENCH_PROGRAMS = bench_nexmark bench_word_count bench_state_memory
bench: setup $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS) --target $(BENCH_PROGRAMS)
	@BUILD=$(BUILD) bash bench/report.sh

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

format: check-clang-format
	@$(CLANG_FORMAT) -i $(FORMAT_FILES)

format-check: check-clang-format
	@bad=; for f in $(FORMAT_FILES); do \
		$(CLANG_FORMAT) --dry-run -Werror "$$f" >/dev/null 2>&1 || bad="$$bad $$f"; \
	done; \
	if [ -n "$$bad" ]; then \
		echo "format-check: not formatted (run 'make format'):"; \
		for f in $$bad; do echo "  $$f"; done; \
		exit 1; \
	fi; \
	echo "format-check: $(words $(FORMAT_FILES)) files formatted"

check-clang-format:
	@command -v $(CLANG_FORMAT) >/dev/null || \
		{ echo "$(CLANG_FORMAT) not found: run scripts/setup.sh" >&2; exit 1; }

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD)

help:
	@sed -n '1,/^BUILD/{/^#/p}' Makefile
