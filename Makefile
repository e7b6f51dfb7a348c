# Corral's entry points. `make run` and `make test` are promises to users' scripts (see README).
#
#   make run                 install what is missing, build, start the whole system on this machine
#   make test                install what is missing, build, run every test (ctest)
#   make build               configure and build into $(BUILD_DIR)
#   make test SANITIZE=address   (or undefined, thread) build and test under a sanitizer
#   make format              apply .clang-format to every C++ file

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

.PHONY: all deps build test run format e2e-deps clean

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

test: build e2e-deps
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

run: build
	@scripts/run.sh $(BUILD_DIR)

format:
	find common dataplane controlplane ctl sim tests -name '*.cc' -o -name '*.h' | \
	  grep -v node_modules | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR)
