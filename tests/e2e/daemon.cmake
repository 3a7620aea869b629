# Daemon robustness tests: include()d by the top-level CMakeLists.txt after the targets
# vgpud and vgpu_common exist and after enable_testing():
#
#     include(tests/e2e/daemon.cmake)
#
# Builds tests/e2e/test_daemon.c (speaks the wire protocol directly; needs no nvcc and
# no GPU) as ${CMAKE_BINARY_DIR}/tests/e2e/test_daemon and registers the ctests
# e2e_daemon_unix and e2e_daemon_tcp (labels "e2e;daemon"): each runs
# run_daemon_test.sh, which starts a private `vgpud --backend emu`, runs the test
# against it and stops it with SIGTERM.

set(_vgpu_dt_src "${CMAKE_CURRENT_LIST_DIR}")

add_executable(vgpu_test_daemon "${_vgpu_dt_src}/test_daemon.c")
target_link_libraries(vgpu_test_daemon PRIVATE vgpu_common)
if(CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options(vgpu_test_daemon PRIVATE -Wall -Wextra -Werror)
endif()
set_target_properties(vgpu_test_daemon PROPERTIES
  C_STANDARD 11 C_EXTENSIONS ON
  OUTPUT_NAME test_daemon RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}/tests/e2e")

if(TARGET vgpud)
  set(_vgpu_dt_vgpud "$<TARGET_FILE:vgpud>")
else()
  set(_vgpu_dt_vgpud "${CMAKE_BINARY_DIR}/bin/vgpud")
endif()

foreach(_vgpu_dt_tr unix tcp)
  add_test(NAME e2e_daemon_${_vgpu_dt_tr}
    COMMAND bash "${_vgpu_dt_src}/run_daemon_test.sh" ${_vgpu_dt_tr} "${_vgpu_dt_vgpud}"
            $<TARGET_FILE:vgpu_test_daemon>)
  set_tests_properties(e2e_daemon_${_vgpu_dt_tr} PROPERTIES LABELS "e2e;daemon" TIMEOUT 90)
endforeach()

# The fault checks (test_daemon --faults): oversized and garbage frames, another session's
# handles on the wire, stalled peers, against a daemon with a short peer timeout.
foreach(_vgpu_dt_tr unix tcp)
  add_test(NAME e2e_daemon_faults_${_vgpu_dt_tr}
    COMMAND bash "${_vgpu_dt_src}/run_daemon_test.sh" ${_vgpu_dt_tr} "${_vgpu_dt_vgpud}"
            $<TARGET_FILE:vgpu_test_daemon>)
  set_tests_properties(e2e_daemon_faults_${_vgpu_dt_tr} PROPERTIES LABELS "e2e;daemon;faults" TIMEOUT 120
    ENVIRONMENT "VGPU_DAEMON_TEST_ARGS=--peer-timeout 3 --max-message 1M;VGPU_DAEMON_TEST_MODE=--faults")
endforeach()

# vgpud refuses to start with unusable TLS files (tls_config_check.sh; skips without the
# openssl command).
add_test(NAME e2e_tls_config COMMAND bash "${_vgpu_dt_src}/tls_config_check.sh" "${_vgpu_dt_vgpud}")
set_tests_properties(e2e_tls_config PROPERTIES LABELS "e2e;daemon;tls" TIMEOUT 120 SKIP_RETURN_CODE 77)
