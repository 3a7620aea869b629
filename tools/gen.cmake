# tools/gen.cmake: the code generator's part of the build. include() it from the
# top-level CMakeLists.txt (after project() and enable_testing()). It provides:
#   - ctest `gen_check`: fails when a committed file under gen/ differs from what
#     tools/gen.py would write now (spec/ or the CUDA headers changed without a regen);
#   - target `gen`: rewrites gen/ (cmake --build <dir> --target gen), to commit;
#   - VGPU_GEN_SOURCES, VGPU_GEN_EXPORTS_MAP, VGPU_GEN_INCLUDE_DIRS for the guest
#     library: generated sources, its version script, and the include directories
#     the generated and hand-written files expect (src/ and the repository root,
#     for "guest/cuda/guest.h" and "gen/procaddr_table.h").
# Cache variables: VGPU_CUDA_INCLUDE (CUDA headers the generator reads; default
# /usr/local/cuda/include), Python3 from find_package.

get_filename_component(VGPU_ROOT "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
find_package(Python3 COMPONENTS Interpreter REQUIRED)
set(VGPU_CUDA_INCLUDE "/usr/local/cuda/include" CACHE PATH "CUDA headers read by tools/gen.py")

set(VGPU_GEN_ARGS --cuda-include "${VGPU_CUDA_INCLUDE}" --cc "${CMAKE_C_COMPILER}")

add_test(NAME gen_check
         COMMAND ${Python3_EXECUTABLE} "${VGPU_ROOT}/tools/gen.py" --check ${VGPU_GEN_ARGS}
         WORKING_DIRECTORY "${VGPU_ROOT}")

add_custom_target(gen
                  COMMAND ${Python3_EXECUTABLE} "${VGPU_ROOT}/tools/gen.py" ${VGPU_GEN_ARGS}
                  WORKING_DIRECTORY "${VGPU_ROOT}"
                  COMMENT "Regenerating gen/ from spec/ (commit the result)"
                  VERBATIM)

set(VGPU_GEN_SOURCES
    "${VGPU_ROOT}/gen/cuda_stubs.c"
    "${VGPU_ROOT}/gen/cuda_stubs_interop.c"
    "${VGPU_ROOT}/gen/procaddr_table.c")
set(VGPU_GEN_EXPORTS_MAP "${VGPU_ROOT}/gen/exports.map")
set(VGPU_GEN_INCLUDE_DIRS "${VGPU_ROOT}/src" "${VGPU_ROOT}")
