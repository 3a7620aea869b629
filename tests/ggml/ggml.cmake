# llama.cpp as a real vgpu client: include()d by the top-level CMakeLists.txt after the
# targets vgpud, vgpu and cuda_guest exist, after enable_testing() and after
# tests/e2e/e2e.cmake (whose cache variables VGPU_E2E_BACKEND, VGPU_E2E_EMU_MEMORY and
# VGPU_E2E_TIMEOUT it follows; it also works without it):
#
#     include(tests/ggml/ggml.cmake)
#
# Builds ${CMAKE_BINARY_DIR}/tests/ggml/ggml_discover (tests/ggml/ggml_discover.c: plain C, no
# nvcc) and registers the ctests e2e_ggml_discovery_unix and e2e_ggml_discovery_tcp (labels
# "e2e;ggml"). Each runs tests/ggml/fetch.sh, which fetches llama.cpp's prebuilt CUDA backend
# (npm package @node-llama-cpp/linux-x64-cuda, pinned) into a per-machine cache once, then
# tests/e2e/run_e2e.sh, which starts a private vgpud and runs ggml_discover through `vgpu run`
# with the package and the CUDA toolkit's libcudart.so.13/libcublas.so.13 on LD_LIBRARY_PATH.
# The tests are skipped (exit 77) only when the package cannot be fetched (no npm, registry
# unreachable) or the toolkit has no libcudart.so.13 at configure time.
# Cache variables:
#   VGPU_GGML           ON: build and register the tests (default ON)
#   VGPU_GGML_CACHE     where fetch.sh keeps the package ("" = its default,
#                       ~/.cache/vgpu/ggml-cuda-<version>; the environment variable of the
#                       same name also works at test time)
#   VGPU_GGML_CUDA_LIB  directory holding libcudart.so.13 and libcublas.so.13
#                       (default: found under VGPU_CUDA_ROOT)

option(VGPU_GGML "Build and register the llama.cpp (ggml-cuda) discovery tests" ON)
set(VGPU_GGML_CACHE "" CACHE PATH "Cache directory for the llama.cpp CUDA backend package (empty: fetch.sh's default)")
if(NOT VGPU_GGML OR (DEFINED VGPU_E2E AND NOT VGPU_E2E))
  message(STATUS "vgpu ggml: disabled")
  return()
endif()

set(_ggml_src "${CMAKE_CURRENT_LIST_DIR}")
set(_ggml_out "${CMAKE_BINARY_DIR}/tests/ggml")
get_filename_component(_ggml_e2e_src "${_ggml_src}/../e2e" ABSOLUTE)
file(MAKE_DIRECTORY "${_ggml_out}")

add_executable(vgpu_ggml_discover "${_ggml_src}/ggml_discover.c")
if(CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options(vgpu_ggml_discover PRIVATE -Wall -Wextra -Werror)
endif()
target_link_libraries(vgpu_ggml_discover PRIVATE ${CMAKE_DL_LIBS})
set_target_properties(vgpu_ggml_discover PROPERTIES
  C_STANDARD 11 C_EXTENSIONS ON OUTPUT_NAME ggml_discover RUNTIME_OUTPUT_DIRECTORY "${_ggml_out}")

# run_e2e.sh's socket helper: e2e.cmake's, or our own build of it when e2e.cmake stopped early
if(TARGET vgpu_e2e_probe)
  set(_ggml_probe "$<TARGET_FILE:vgpu_e2e_probe>")
else()
  add_executable(vgpu_ggml_probe "${_ggml_e2e_src}/e2e_probe.c")
  set_target_properties(vgpu_ggml_probe PROPERTIES
    C_STANDARD 11 C_EXTENSIONS ON OUTPUT_NAME e2e_probe RUNTIME_OUTPUT_DIRECTORY "${_ggml_out}")
  set(_ggml_probe "$<TARGET_FILE:vgpu_ggml_probe>")
endif()

# the toolkit's shared cudart and cuBLAS, which libggml-cuda.so links (…so.13)
if(NOT VGPU_CUDA_ROOT)
  set(VGPU_CUDA_ROOT "/usr/local/cuda")
endif()
find_path(VGPU_GGML_CUDA_LIB libcudart.so.13
  HINTS "${VGPU_CUDA_ROOT}/lib64" "${VGPU_CUDA_ROOT}/targets/x86_64-linux/lib" "${VGPU_CUDA_ROOT}/lib"
        ${CUDAToolkit_LIBRARY_DIR}
  NO_DEFAULT_PATH)
if(NOT VGPU_GGML_CUDA_LIB OR NOT EXISTS "${VGPU_GGML_CUDA_LIB}/libcublas.so.13")
  message(WARNING "vgpu ggml: libcudart.so.13 / libcublas.so.13 not found under ${VGPU_CUDA_ROOT} "
                  "(set VGPU_GGML_CUDA_LIB): the llama.cpp discovery test is SKIPPED")
  add_test(NAME e2e_ggml_skipped_no_cuda13
    COMMAND sh -c "echo 'vgpu ggml: no CUDA 13 libcudart/libcublas at configure time; test skipped'; exit 77")
  set_tests_properties(e2e_ggml_skipped_no_cuda13 PROPERTIES LABELS "e2e;ggml" SKIP_RETURN_CODE 77)
  return()
endif()

if(NOT DEFINED VGPU_E2E_BACKEND)
  set(VGPU_E2E_BACKEND emu)
endif()
if(NOT VGPU_E2E_TIMEOUT)
  set(VGPU_E2E_TIMEOUT 240)
endif()
# the first run downloads about 143 MB: allow up to 10 minutes for that
math(EXPR _ggml_timeout "${VGPU_E2E_TIMEOUT} + 660")

set(_ggml_env
  "VGPU_E2E_BIN=${CMAKE_BINARY_DIR}/bin"
  "VGPU_E2E_VGPUD=$<IF:$<TARGET_EXISTS:vgpud>,$<TARGET_FILE:vgpud>,${CMAKE_BINARY_DIR}/bin/vgpud>"
  "VGPU_E2E_VGPU=$<IF:$<TARGET_EXISTS:vgpu>,$<TARGET_FILE:vgpu>,${CMAKE_BINARY_DIR}/bin/vgpu>"
  "VGPU_E2E_LIB=${CMAKE_BINARY_DIR}/lib"
  "VGPU_E2E_PROBE=${_ggml_probe}"
  "VGPU_E2E_BACKEND=${VGPU_E2E_BACKEND}"
  "VGPU_E2E_EMU_MEMORY=${VGPU_E2E_EMU_MEMORY}"
  "VGPU_E2E_TIMEOUT=${VGPU_E2E_TIMEOUT}"
  "VGPU_GGML_CUDA_LIB=${VGPU_GGML_CUDA_LIB}"
  "VGPU_GGML_EXPECT_COUNT=1")
if(VGPU_GGML_CACHE)
  list(APPEND _ggml_env "VGPU_GGML_CACHE=${VGPU_GGML_CACHE}")
endif()
# what the emu daemon serves: its name, its default memory, compute capability 9.0; on a
# real GPU (VGPU_E2E_BACKEND=cuda/auto) whatever the device reports is printed, not checked
if(VGPU_E2E_BACKEND STREQUAL "emu")
  list(APPEND _ggml_env "VGPU_GGML_EXPECT_NAME=vgpu emulated GPU" "VGPU_GGML_EXPECT_CC=9.0"
                        "VGPU_GGML_EXACT_MEMORY=1")
  if(NOT VGPU_E2E_EMU_MEMORY)
    list(APPEND _ggml_env "VGPU_GGML_EXPECT_TOTAL=17179869184")
  endif()
endif()
if(VGPU_SANITIZE)
  # the sanitizer build's guest library needs the ASan runtime in every program
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libasan.so
                  OUTPUT_VARIABLE _ggml_libasan OUTPUT_STRIP_TRAILING_WHITESPACE)
  list(APPEND _ggml_env "VGPU_E2E_PRELOAD=${_ggml_libasan}")
endif()

foreach(_ggml_tr unix tcp)
  add_test(NAME e2e_ggml_discovery_${_ggml_tr}
    COMMAND bash "${_ggml_src}/fetch.sh" --run
            bash "${_ggml_e2e_src}/run_e2e.sh" ${_ggml_tr} $<TARGET_FILE:vgpu_ggml_discover>)
  set_tests_properties(e2e_ggml_discovery_${_ggml_tr} PROPERTIES
    LABELS "e2e;ggml"
    TIMEOUT ${_ggml_timeout}
    SKIP_RETURN_CODE 77
    ENVIRONMENT "${_ggml_env}")
endforeach()
