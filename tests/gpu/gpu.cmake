# Helpers of the GPU suite (tests/gpu/run), built everywhere so they stay compiling;
# they only run on a machine with an NVIDIA GPU. No ctest here.
add_executable(gpu_fields tests/gpu/fields.c)
target_link_libraries(gpu_fields PRIVATE ${CMAKE_DL_LIBS})
set_target_properties(gpu_fields PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests/gpu)

# The GPU suite's scripts stay runnable: the driver script parses and the framework
# workloads' comparison logic passes its self-test (no GPU or framework needed).
add_test(NAME gpu_suite_scripts
  COMMAND sh -c "bash -n '${CMAKE_SOURCE_DIR}/tests/gpu/run' && '${Python3_EXECUTABLE}' '${CMAKE_SOURCE_DIR}/tests/gpu/workloads.py' selftest")
set_tests_properties(gpu_suite_scripts PROPERTIES LABELS "unit" TIMEOUT 60)
