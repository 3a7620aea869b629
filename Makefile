# Convenience wrapper around CMake: `make` builds into build/, `make test` runs every test.
BUILD ?= build
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: all test asan demo gen clean bench fuzz valgrind install uninstall vm-test
# make fuzz: libFuzzer harnesses (clang) in build-fuzz, each run FUZZ_SECONDS (tests/fuzz/README.md)
FUZZ_SECONDS ?= 60
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

fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) JOBS=$(JOBS) ./tests/fuzz/run_fuzz.sh

# vgpud and its workers under valgrind memcheck through the e2e programs (emu backend)
valgrind: all
	./tests/e2e/run_valgrind.sh $(BUILD)

# The QEMU guest test (tests/vm/README.md): boots a Debian kernel under QEMU (TCG) with
# vgpu installed in its initramfs and runs the e2e programs there against a private vgpud
# over TCP and ivshmem. setup.sh installs qemu-system-x86 and busybox-static with apt-get
# when missing (as root) and keeps the kernel in VGPU_VM_CACHE (default ~/.cache/vgpu-vm).
# VM_TRANSPORTS=tcp,ivshmem picks the transports (default: what vgpud offers). Not a ctest.
VM_TRANSPORTS ?=
vm-test: all
	./tests/vm/setup.sh
	./tests/vm/run_vm_test.sh $(if $(VM_TRANSPORTS),--transports $(VM_TRANSPORTS)) $(BUILD)

# make install / make uninstall [PREFIX=/usr/local] [DESTDIR=...]: cmake/install.cmake
# says what goes where (docs/vm.md). The prefix is given at install time (cmake --install
# --prefix), so installing never reconfigures an existing build directory.
PREFIX ?= /usr/local
DESTDIR ?=
install:
	@[ -f $(BUILD)/CMakeCache.txt ] || cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target vgpud vgpu vgpu_bench_worker cuda_guest nvml_guest
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

uninstall:
	@[ -f $(BUILD)/vgpu_uninstall.cmake ] || cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	DESTDIR="$(DESTDIR)" cmake -DPREFIX="$(PREFIX)" -P $(BUILD)/vgpu_uninstall.cmake

gen:
	python3 tools/gen.py

clean:
	rm -rf build build-asan build-clang build-fuzz
