# `make install` / `cmake --install`: what goes where (docs/vm.md, "Installing").
#   PREFIX/bin            vgpud, vgpu, vgpu-bench-worker (`vgpu bench` runs it from there)
#   PREFIX/lib/vgpu       libcuda.so.1, libnvidia-ml.so.1 and their .so links: a directory of
#                         their own, so nothing else of the system's library path is shadowed
#   /etc/ld.so.conf.d/vgpu.conf   names PREFIX/lib/vgpu: every program finds the libraries,
#                         with no LD_PRELOAD and nothing in /etc/ld.so.preload
#   PREFIX/lib/systemd/system/vgpud.service   (systemd searches /usr/local/lib/systemd/system too)
#   /etc/vgpu/vgpud.conf, /etc/vgpu/client.conf   only when absent (local edits survive)
# The prefix may change at install time (cmake --install --prefix, as the Makefile does),
# so paths that name it are written by install(CODE) from CMAKE_INSTALL_PREFIX then.
# DESTDIR is honoured; ldconfig runs only without DESTDIR and as root.
set(VGPU_SYSCONFDIR "/etc" CACHE PATH "where vgpu/ (configurations) and ld.so.conf.d/ are installed")
set(VGPU_SYSTEMD_UNIT_DIR "" CACHE PATH "where vgpud.service is installed (empty: PREFIX/lib/systemd/system)")

install(TARGETS vgpud vgpu vgpu_bench_worker RUNTIME DESTINATION bin)
# VERSION = SOVERSION = 1: the file is libcuda.so.1 and the namelink libcuda.so -> libcuda.so.1.
install(TARGETS cuda_guest nvml_guest LIBRARY DESTINATION lib/vgpu)

configure_file(${CMAKE_CURRENT_LIST_DIR}/install_extra.cmake.in ${CMAKE_BINARY_DIR}/vgpu_install_extra.cmake @ONLY)
configure_file(${CMAKE_CURRENT_LIST_DIR}/uninstall.cmake.in ${CMAKE_BINARY_DIR}/vgpu_uninstall.cmake @ONLY)
install(SCRIPT ${CMAKE_BINARY_DIR}/vgpu_install_extra.cmake)
