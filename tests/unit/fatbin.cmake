# Module-image parser test (tests/unit/test_fatbin.c): builds its fixtures from fixtures/kernels.cu with
# nvcc at build time, the test program, and the ctest `unit_fatbin`. include() this from the top-level
# CMakeLists.txt after the static library target vgpu_common (src/common/*.c) exists. Without nvcc the
# test is left out, so machines without a CUDA toolkit still build.

set(VGPU_NVCC "/usr/local/cuda/bin/nvcc" CACHE FILEPATH "nvcc used to build the fatbin test fixtures")
if(NOT EXISTS "${VGPU_NVCC}")
  message(STATUS "vgpu: ${VGPU_NVCC} not found, unit_fatbin left out")
  return()
endif()

find_package(Threads REQUIRED)

set(_fb_src "${CMAKE_CURRENT_LIST_DIR}/fixtures/kernels.cu")
set(_fb_dir "${CMAKE_BINARY_DIR}/tests/unit/fatbin_fixtures")
file(MAKE_DIRECTORY "${_fb_dir}")
set(_fb_multi
    -gencode arch=compute_75,code=sm_75
    -gencode arch=compute_90,code=sm_90
    -gencode arch=compute_90,code=compute_90)

# One fixture: nvcc ARGS... kernels.cu -o <dir>/<name>.
set(_fb_outputs "")
macro(_vgpu_fatbin_fixture name)
  add_custom_command(
    OUTPUT "${_fb_dir}/${name}"
    COMMAND "${VGPU_NVCC}" ${ARGN} "${_fb_src}" -o "${_fb_dir}/${name}"
    DEPENDS "${_fb_src}"
    COMMENT "nvcc fixture ${name}"
    VERBATIM)
  list(APPEND _fb_outputs "${_fb_dir}/${name}")
endmacro()

# What nvcc 13 writes (checked by the test): by default PTX entries are zstd-compressed (flag 0x8000) and
# ELF entries stored plain; -Xfatbin -compress-all compresses ELF too; --compress-mode=speed uses LZ4
# (flag 0x2000) instead of zstd; --compress-mode=none stores everything plain.
_vgpu_fatbin_fixture(plain.fatbin -fatbin -arch=sm_90)
_vgpu_fatbin_fixture(multi.fatbin -fatbin ${_fb_multi})
_vgpu_fatbin_fixture(zstd.fatbin -fatbin ${_fb_multi} -Xfatbin -compress-all)
_vgpu_fatbin_fixture(lz4.fatbin -fatbin ${_fb_multi} -Xfatbin -compress-all --compress-mode=speed)
_vgpu_fatbin_fixture(nocomp.fatbin -fatbin ${_fb_multi} --compress-mode=none)
_vgpu_fatbin_fixture(ptx_lz4.fatbin -fatbin -gencode arch=compute_90,code=compute_90 --compress-mode=speed)
_vgpu_fatbin_fixture(k90.cubin -cubin -arch=sm_90)
_vgpu_fatbin_fixture(k75.cubin -cubin -arch=sm_75)
_vgpu_fatbin_fixture(kernels.ptx -ptx -arch=sm_90)
_vgpu_fatbin_fixture(krdc.cubin -cubin -rdc=true -arch=sm_90) # relocatable: helper() has .text/.nv.info too
add_custom_target(vgpu_fatbin_fixtures DEPENDS ${_fb_outputs})

add_executable(test_fatbin "${CMAKE_CURRENT_LIST_DIR}/test_fatbin.c")
target_include_directories(test_fatbin PRIVATE "${CMAKE_CURRENT_LIST_DIR}/../../src")
# fatbin_zstd.c opens libzstd.so.1 with dlopen and guards it with a pthread mutex.
target_link_libraries(test_fatbin PRIVATE vgpu_common ${CMAKE_DL_LIBS} Threads::Threads)
add_dependencies(test_fatbin vgpu_fatbin_fixtures)
add_test(NAME unit_fatbin COMMAND test_fatbin "${_fb_dir}")
