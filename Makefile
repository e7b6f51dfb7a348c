# Corral's entry points. `make run` and `make test` are promises to users' scripts (see README).
#
#   make run                 install what is missing, build, start the whole system on this machine
#   make test                install what is missing, build, run every test (ctest)
#   make build               configure and build into $(BUILD_DIR)
#   make test SANITIZE=address   (or undefined, thread) build and test under a sanitizer
#   make format              apply .clang-format to every C++ file
#   make bench               build a release tree and run the benchmark (docs/performance.md)
#   make bench-routing       routing quality against nginx, simulated GPUs (docs/routing-quality.md)
#   make fuzz                fuzz every parser for five minutes each (docs/fuzzing.md)
#   make soak                the fault and hostile-client suites at full length (docs/reliability.md)

SANITIZE ?=
ifeq ($(SANITIZE),)
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
else
BUILD_DIR ?= build-$(SANITIZE)
BUILD_TYPE ?= Debug
endif
JOBS ?= $(shell nproc)
CTEST_ARGS ?=

.PHONY: all deps build test run format e2e-deps clean bench bench-routing fuzz soak

all: build

deps:
	@scripts/install-deps.sh

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DCORRAL_SANITIZE=$(SANITIZE) \
	  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON

build: deps $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)

e2e-deps:
	@scripts/install-e2e-deps.sh

# Every test, then a short fuzz run over every parser (about half a minute).
test: build e2e-deps
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)
	@fuzz/run.sh --short

# The bounded fault and hostile-client tests of `make test`, run for CORRAL_SOAK_SECONDS each.
CORRAL_SOAK_SECONDS ?= 300
soak: build
	cd $(BUILD_DIR) && CORRAL_SOAK_SECONDS=$(CORRAL_SOAK_SECONDS) \
	  ctest --output-on-failure -L soak $(CTEST_ARGS)

# The benchmark measures an optimised build of its own, never the debug-info tree the tests use.
BENCH_BUILD_DIR ?= build-bench
bench:
	@scripts/install-deps.sh --bench
	cmake -S . -B $(BENCH_BUILD_DIR) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BENCH_BUILD_DIR) -j $(JOBS) --target corral-proxy corral-sim corral-loadgen \
	  corral-control corralctl corral-control-bench
	@bench/run.sh $(BENCH_BUILD_DIR)

# Routing quality against model-blind balancers (docs/routing-quality.md), on the same release tree.
bench-routing:
	@scripts/install-deps.sh --bench
	cmake -S . -B $(BENCH_BUILD_DIR) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BENCH_BUILD_DIR) -j $(JOBS) --target corral-proxy corral-sim corral-control \
	  corralctl corral-routing-bench
	@bench/routing/run.sh $(BENCH_BUILD_DIR)

fuzz:
	@fuzz/run.sh --long

run: build
	@scripts/run.sh $(BUILD_DIR)

format:
	find common dataplane controlplane ctl sim tests -name '*.cc' -o -name '*.h' | \
	  grep -v node_modules | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR)
