# Fuzz harnesses (tests/fuzz/README.md): every tests/fuzz/fuzz_<name>.c defines
# LLVMFuzzerTestOneInput over the daemon's code (library vgpu_server) and the common code.
#  - Always: fuzz_<name>_replay (the harness with replay_main.c) and the ctest
#    fuzz_replay_<name>, which runs the harness once on every file of corpus/fuzz_<name>/
#    and regress/fuzz_<name>/ (under `make asan` too).
#  - With -DVGPU_FUZZ=ON (clang; `make fuzz` configures build-fuzz so): fuzz_<name>, the
#    libFuzzer binary.
file(GLOB VGPU_FUZZ_HARNESSES CONFIGURE_DEPENDS "${CMAKE_CURRENT_LIST_DIR}/fuzz_*.c")
set(_fuzz_dir "${CMAKE_CURRENT_LIST_DIR}")
set(VGPU_FUZZ_TARGETS "")
foreach(_fuzz_src IN LISTS VGPU_FUZZ_HARNESSES)
  get_filename_component(_fuzz_name "${_fuzz_src}" NAME_WE)
  if(VGPU_FUZZ)
    add_executable(${_fuzz_name} "${_fuzz_src}")
    target_link_libraries(${_fuzz_name} PRIVATE vgpu_server)
    target_link_options(${_fuzz_name} PRIVATE -fsanitize=fuzzer)
    list(APPEND VGPU_FUZZ_TARGETS ${_fuzz_name})
  endif()
  add_executable(${_fuzz_name}_replay "${_fuzz_src}" "${_fuzz_dir}/replay_main.c")
  target_link_libraries(${_fuzz_name}_replay PRIVATE vgpu_server)
  string(REGEX REPLACE "^fuzz_" "" _fuzz_short "${_fuzz_name}")
  add_test(NAME fuzz_replay_${_fuzz_short}
           COMMAND ${_fuzz_name}_replay "${_fuzz_dir}/corpus/${_fuzz_name}" "${_fuzz_dir}/regress/${_fuzz_name}")
  set_tests_properties(fuzz_replay_${_fuzz_short} PROPERTIES LABELS "fuzz" TIMEOUT 300)
endforeach()
if(VGPU_FUZZ)
  add_custom_target(vgpu_fuzzers DEPENDS ${VGPU_FUZZ_TARGETS})
endif()
