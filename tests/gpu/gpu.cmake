# Helpers of the GPU suite (tests/gpu/run), built everywhere so they stay compiling;
# they only run on a machine with an NVIDIA GPU. No ctest here.
add_executable(gpu_fields tests/gpu/fields.c)
target_link_libraries(gpu_fields PRIVATE ${CMAKE_DL_LIBS})
set_target_properties(gpu_fields PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests/gpu)
