# Convenience wrapper around CMake: `make` builds into build/, `make test` runs every test.
BUILD ?= build
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: all test asan demo gen clean bench
all:
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

asan:
	$(MAKE) BUILD=build-asan CMAKE_FLAGS="-DVGPU_SANITIZE=ON" test

demo: all
	./scripts/demo.sh

bench: all
	BUILD=$(BUILD) ./bench/run

gen:
	python3 tools/gen.py

clean:
	rm -rf build build-asan build-clang
