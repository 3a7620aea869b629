# vgpu end-to-end tests: include()d by the top-level CMakeLists.txt, after the
# targets vgpud, vgpu and cuda_guest exist and after enable_testing():
#
#     include(tests/e2e/e2e.cmake)
#
# Expects (all from the top level):
#   target vgpud, target vgpu        the daemon and the CLI (binaries in ${CMAKE_BINARY_DIR}/bin)
#   target cuda_guest                builds ${CMAKE_BINARY_DIR}/lib/libcuda.so.1 and libcuda.so
#   ${CMAKE_SOURCE_DIR}/include      holds vgpu/emu_kernel.h (found relative to this file)
# Cache variables:
#   VGPU_E2E            ON: build and register the tests (default ON)
#   VGPU_E2E_NVCC       nvcc to use (default: ${VGPU_CUDA_ROOT}/bin/nvcc, else CUDAToolkit's, else
#                       PATH, $CUDA_HOME, /usr/local/cuda)
#   VGPU_E2E_ARCH       SM of the programs (default 90: -arch=sm_90)
#   VGPU_E2E_NVCC_FLAGS extra nvcc flags (e.g. -ccbin g++-12)
#   VGPU_E2E_BACKEND    backend the tests ask vgpud for: emu (default, CI) or cuda (GPU
#                       suite; also registers the PTX-only variants)
#   VGPU_E2E_EMU_MEMORY optional --emu-memory SIZE for the emu daemon ("" = its default)
#   VGPU_E2E_TIMEOUT    seconds one program may run (default 240; ctest TIMEOUT is this + 60)
# Outputs (in ${CMAKE_BINARY_DIR}/tests/e2e): rt_basic_static, rt_basic_shared,
# rt_basic_ptx (PTX only), rt_work, blas_basic (if the toolkit has cuBLAS), dnn_basic (if cuDNN
# is installed), drv_basic, drv_threads, drv_vmm, drv_mapped, drv_link, drv_visible, probe_ollama,
# killed_probe, hold_memory, unreachable, e2e_probe, drv_kernels.{fatbin,cubin,ptx},
# link_kernels_{a,b}.{ptx,cubin,fatbin} (relocatable),
# plugins/libvgpu_e2e_{rt,drv,work}_kernels.so, plugin_selftest; bin/hello_vgpu (make demo).
# Tests (label "e2e"), each _{unix,tcp} (unix: lanes on shared memory; the main programs
# also _unix-noshm: VGPU_SHM=0, lanes on the socket): e2e_rt_basic_static, e2e_rt_basic_shared,
# e2e_rt_work, e2e_drv_basic, e2e_drv_threads, e2e_drv_vmm, e2e_drv_mapped, e2e_drv_link,
# e2e_drv_pipeline, e2e_drv_visible, e2e_probe_ollama,
# e2e_killed_probe, e2e_smi, e2e_unreachable_drv, e2e_unreachable_rt, e2e_blas_basic,
# e2e_dnn_basic (these two skip, exit 77, when their library is absent); plus
# e2e_drv_basic_vsock and e2e_smi_vsock (skip without vsock loopback), e2e_unreachable_drv_vsock;
# e2e_plugin_selftest, e2e_plugin_symbols; with a backend other than emu also
# e2e_{rt_basic_ptx,drv_basic_ptx}_{unix,tcp}. tests/e2e/README.md lists what each covers.
# Variables set for other suites: VGPU_E2E_OUT_DIR, VGPU_E2E_RUN_SCRIPT, VGPU_E2E_RT_BASIC_PTX,
# VGPU_E2E_DRV_PTX; target vgpu_e2e_programs builds every program.

option(VGPU_E2E "Build and register the vgpu end-to-end tests" ON)
set(VGPU_E2E_ARCH "90" CACHE STRING "SM architecture of the e2e test programs (90 = sm_90)")
set(VGPU_E2E_NVCC_FLAGS "" CACHE STRING "Extra nvcc flags for the e2e test programs")
set(VGPU_E2E_BACKEND "emu" CACHE STRING "vgpud backend for the e2e tests: emu, cuda or auto")
set_property(CACHE VGPU_E2E_BACKEND PROPERTY STRINGS emu cuda auto)
set(VGPU_E2E_EMU_MEMORY "" CACHE STRING "--emu-memory for the e2e daemon (empty: vgpud's default)")
set(VGPU_E2E_TIMEOUT "240" CACHE STRING "Seconds one e2e program may run")

if(NOT VGPU_E2E)
  message(STATUS "vgpu e2e: disabled (VGPU_E2E=OFF)")
  return()
endif()

set(_e2e_src "${CMAKE_CURRENT_LIST_DIR}")
set(_e2e_out "${CMAKE_BINARY_DIR}/tests/e2e")
get_filename_component(_e2e_vgpu_include "${_e2e_src}/../../include" ABSOLUTE)
file(MAKE_DIRECTORY "${_e2e_out}/plugins" "${_e2e_out}/gen")
set(VGPU_E2E_OUT_DIR "${_e2e_out}")
set(VGPU_E2E_RUN_SCRIPT "${_e2e_src}/run_e2e.sh")

set(_e2e_c_warnings)
if(CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
  set(_e2e_c_warnings -Wall -Wextra -Werror)
endif()

# ---------------------------------------------------------------------------------
# CPU kernel plugins and their self-test: plain C, no CUDA needed

foreach(_p rt drv work)
  add_library(vgpu_e2e_${_p}_kernels MODULE "${_e2e_src}/plugins/${_p}_kernels.c")
  target_include_directories(vgpu_e2e_${_p}_kernels PRIVATE "${_e2e_vgpu_include}" "${_e2e_src}")
  target_compile_options(vgpu_e2e_${_p}_kernels PRIVATE ${_e2e_c_warnings})
  if(CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
    # bit-exact floating point: never contract a*b+c into an FMA
    target_compile_options(vgpu_e2e_${_p}_kernels PRIVATE -ffp-contract=off)
  endif()
  set_target_properties(vgpu_e2e_${_p}_kernels PROPERTIES
    C_STANDARD 11 C_EXTENSIONS ON
    LIBRARY_OUTPUT_DIRECTORY "${_e2e_out}/plugins")
endforeach()
set(_e2e_plugins "$<TARGET_FILE:vgpu_e2e_rt_kernels>:$<TARGET_FILE:vgpu_e2e_drv_kernels>:$<TARGET_FILE:vgpu_e2e_work_kernels>")

add_executable(vgpu_e2e_plugin_selftest "${_e2e_src}/plugin_selftest.c")
target_include_directories(vgpu_e2e_plugin_selftest PRIVATE "${_e2e_vgpu_include}" "${_e2e_src}")
target_compile_options(vgpu_e2e_plugin_selftest PRIVATE ${_e2e_c_warnings})
if(CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options(vgpu_e2e_plugin_selftest PRIVATE -ffp-contract=off)
endif()
target_link_libraries(vgpu_e2e_plugin_selftest PRIVATE ${CMAKE_DL_LIBS})
set_target_properties(vgpu_e2e_plugin_selftest PROPERTIES
  C_STANDARD 11 C_EXTENSIONS ON
  OUTPUT_NAME plugin_selftest RUNTIME_OUTPUT_DIRECTORY "${_e2e_out}")
add_test(NAME e2e_plugin_selftest
  COMMAND vgpu_e2e_plugin_selftest $<TARGET_FILE:vgpu_e2e_rt_kernels> $<TARGET_FILE:vgpu_e2e_drv_kernels>)
set_tests_properties(e2e_plugin_selftest PROPERTIES LABELS "e2e" TIMEOUT 60)

# ---------------------------------------------------------------------------------
# nvcc and the CUDA toolkit

if(NOT VGPU_E2E_NVCC)
  set(_e2e_nvcc_guess "")
  if(VGPU_CUDA_ROOT AND EXISTS "${VGPU_CUDA_ROOT}/bin/nvcc")
    set(_e2e_nvcc_guess "${VGPU_CUDA_ROOT}/bin/nvcc")
  else()
    if(NOT CUDAToolkit_FOUND)
      find_package(CUDAToolkit QUIET)
    endif()
    if(CUDAToolkit_NVCC_EXECUTABLE AND EXISTS "${CUDAToolkit_NVCC_EXECUTABLE}")
      set(_e2e_nvcc_guess "${CUDAToolkit_NVCC_EXECUTABLE}")
    else()
      find_program(VGPU_E2E_NVCC_FOUND nvcc
        HINTS "$ENV{CUDA_HOME}/bin" "$ENV{CUDA_PATH}/bin" /usr/local/cuda/bin)
      if(VGPU_E2E_NVCC_FOUND)
        set(_e2e_nvcc_guess "${VGPU_E2E_NVCC_FOUND}")
      endif()
    endif()
  endif()
  if(_e2e_nvcc_guess)
    set(VGPU_E2E_NVCC "${_e2e_nvcc_guess}" CACHE FILEPATH "nvcc for the vgpu e2e tests" FORCE)
  endif()
endif()

if(NOT VGPU_E2E_NVCC OR NOT EXISTS "${VGPU_E2E_NVCC}")
  message(WARNING "vgpu e2e: nvcc not found (set VGPU_E2E_NVCC or install the CUDA toolkit): "
                  "the end-to-end tests are SKIPPED; only the plugin self-test runs")
  add_test(NAME e2e_skipped_no_nvcc
    COMMAND sh -c "echo 'vgpu e2e: nvcc not found at configure time; end-to-end tests skipped'; exit 77")
  set_tests_properties(e2e_skipped_no_nvcc PROPERTIES LABELS "e2e" SKIP_RETURN_CODE 77)
  return()
endif()

# toolkit layout: prefer CUDAToolkit's answers, else the directories around nvcc
get_filename_component(_e2e_cuda_root "${VGPU_E2E_NVCC}" DIRECTORY)
get_filename_component(_e2e_cuda_root "${_e2e_cuda_root}" DIRECTORY)
find_path(VGPU_E2E_CUDA_INCLUDE cuda.h
  HINTS ${CUDAToolkit_INCLUDE_DIRS} "${_e2e_cuda_root}/include" "${_e2e_cuda_root}/targets/x86_64-linux/include"
  NO_DEFAULT_PATH)
find_library(VGPU_E2E_CUDART_STATIC cudart_static
  HINTS ${CUDAToolkit_LIBRARY_DIR} "${_e2e_cuda_root}/lib64" "${_e2e_cuda_root}/lib"
        "${_e2e_cuda_root}/targets/x86_64-linux/lib"
  NO_DEFAULT_PATH)
if(NOT VGPU_E2E_CUDA_INCLUDE OR NOT VGPU_E2E_CUDART_STATIC)
  message(WARNING "vgpu e2e: cuda.h or libcudart_static.a not found next to ${VGPU_E2E_NVCC}: "
                  "the end-to-end tests are SKIPPED")
  add_test(NAME e2e_skipped_no_toolkit
    COMMAND sh -c "echo 'vgpu e2e: CUDA toolkit incomplete at configure time; end-to-end tests skipped'; exit 77")
  set_tests_properties(e2e_skipped_no_toolkit PROPERTIES LABELS "e2e" SKIP_RETURN_CODE 77)
  return()
endif()
get_filename_component(_e2e_cuda_libdir "${VGPU_E2E_CUDART_STATIC}" DIRECTORY)
message(STATUS "vgpu e2e: nvcc ${VGPU_E2E_NVCC}, sm_${VGPU_E2E_ARCH}, backend ${VGPU_E2E_BACKEND}")

# ---------------------------------------------------------------------------------
# programs built by nvcc

separate_arguments(_e2e_nvcc_extra UNIX_COMMAND "${VGPU_E2E_NVCC_FLAGS}")
set(_e2e_nvcc ${VGPU_E2E_NVCC} ${_e2e_nvcc_extra} -I${_e2e_src})
set(_e2e_sass -arch=sm_${VGPU_E2E_ARCH})
set(_e2e_ptx_only -gencode arch=compute_${VGPU_E2E_ARCH},code=compute_${VGPU_E2E_ARCH})
set(_e2e_rt_deps "${_e2e_src}/rt_basic.cu" "${_e2e_src}/e2e_types.h")
set(_e2e_drv_deps "${_e2e_src}/drv_kernels.cu" "${_e2e_src}/e2e_types.h")

add_custom_command(OUTPUT "${_e2e_out}/rt_basic_static"
  COMMAND ${_e2e_nvcc} -std=c++17 -O2 ${_e2e_sass} -cudart static
          -o "${_e2e_out}/rt_basic_static" "${_e2e_src}/rt_basic.cu"
  DEPENDS ${_e2e_rt_deps} COMMENT "nvcc rt_basic (static cudart)" VERBATIM)
add_custom_command(OUTPUT "${_e2e_out}/rt_basic_shared"
  COMMAND ${_e2e_nvcc} -std=c++17 -O2 ${_e2e_sass} -cudart shared -Xlinker -rpath=${_e2e_cuda_libdir}
          -o "${_e2e_out}/rt_basic_shared" "${_e2e_src}/rt_basic.cu"
  DEPENDS ${_e2e_rt_deps} COMMENT "nvcc rt_basic (shared cudart)" VERBATIM)
add_custom_command(OUTPUT "${_e2e_out}/rt_basic_ptx"
  COMMAND ${_e2e_nvcc} -std=c++17 -O2 ${_e2e_ptx_only} -cudart static
          -o "${_e2e_out}/rt_basic_ptx" "${_e2e_src}/rt_basic.cu"
  DEPENDS ${_e2e_rt_deps} COMMENT "nvcc rt_basic (PTX only, for the GPU suite)" VERBATIM)
add_custom_command(OUTPUT "${_e2e_out}/rt_basic.cubin"
  COMMAND ${_e2e_nvcc} -std=c++17 ${_e2e_sass} -cubin -o "${_e2e_out}/rt_basic.cubin" "${_e2e_src}/rt_basic.cu"
  DEPENDS ${_e2e_rt_deps} COMMENT "nvcc rt_basic.cubin (kernel names)" VERBATIM)
add_custom_command(OUTPUT "${_e2e_out}/rt_work"
  COMMAND ${_e2e_nvcc} -std=c++17 -O2 ${_e2e_sass} -cudart static
          -o "${_e2e_out}/rt_work" "${_e2e_src}/rt_work.cu"
  DEPENDS "${_e2e_src}/rt_work.cu" COMMENT "nvcc rt_work" VERBATIM)
add_custom_command(OUTPUT "${_e2e_out}/rt_work.cubin"
  COMMAND ${_e2e_nvcc} -std=c++17 ${_e2e_sass} -cubin -o "${_e2e_out}/rt_work.cubin" "${_e2e_src}/rt_work.cu"
  DEPENDS "${_e2e_src}/rt_work.cu" COMMENT "nvcc rt_work.cubin (kernel names)" VERBATIM)
add_custom_command(OUTPUT "${_e2e_out}/drv_kernels.fatbin"
  COMMAND ${_e2e_nvcc} ${_e2e_sass} -fatbin -o "${_e2e_out}/drv_kernels.fatbin" "${_e2e_src}/drv_kernels.cu"
  DEPENDS ${_e2e_drv_deps} COMMENT "nvcc drv_kernels.fatbin" VERBATIM)
add_custom_command(OUTPUT "${_e2e_out}/drv_kernels.cubin"
  COMMAND ${_e2e_nvcc} ${_e2e_sass} -cubin -o "${_e2e_out}/drv_kernels.cubin" "${_e2e_src}/drv_kernels.cu"
  DEPENDS ${_e2e_drv_deps} COMMENT "nvcc drv_kernels.cubin" VERBATIM)
add_custom_command(OUTPUT "${_e2e_out}/drv_kernels.ptx"
  COMMAND ${_e2e_nvcc} ${_e2e_sass} -ptx -o "${_e2e_out}/drv_kernels.ptx" "${_e2e_src}/drv_kernels.cu"
  DEPENDS ${_e2e_drv_deps} COMMENT "nvcc drv_kernels.ptx" VERBATIM)
# drv_link's link inputs: relocatable device code (-rdc=true) of link_kernels_a.cu (a kernel
# calling a function defined only in link_kernels_b.cu) and link_kernels_b.cu
foreach(_in a b)
  foreach(_k ptx cubin fatbin)
    add_custom_command(OUTPUT "${_e2e_out}/link_kernels_${_in}.${_k}"
      COMMAND ${_e2e_nvcc} ${_e2e_sass} -rdc=true -${_k} -o "${_e2e_out}/link_kernels_${_in}.${_k}"
              "${_e2e_src}/link_kernels_${_in}.cu"
      DEPENDS "${_e2e_src}/link_kernels_${_in}.cu" "${_e2e_src}/e2e_types.h"
      COMMENT "nvcc link_kernels_${_in}.${_k} (relocatable)" VERBATIM)
  endforeach()
endforeach()
# embedded images: FILE|SYMBOL
foreach(_pair drv_kernels.fatbin|e2e_drv_fatbin drv_kernels.cubin|e2e_drv_cubin drv_kernels.ptx|e2e_drv_ptx
              link_kernels_a.ptx|e2e_link_a_ptx link_kernels_b.ptx|e2e_link_b_ptx
              link_kernels_a.cubin|e2e_link_a_cubin link_kernels_b.cubin|e2e_link_b_cubin
              link_kernels_b.fatbin|e2e_link_b_fatbin)
  string(REPLACE "|" ";" _pair "${_pair}")
  list(GET _pair 0 _file)
  list(GET _pair 1 _sym)
  string(REPLACE "." "_" _stem "${_file}")
  add_custom_command(OUTPUT "${_e2e_out}/gen/${_stem}.c"
    COMMAND ${CMAKE_COMMAND} -DIN=${_e2e_out}/${_file} -DOUT=${_e2e_out}/gen/${_stem}.c
            -DNAME=${_sym} -P "${_e2e_src}/embed.cmake"
    DEPENDS "${_e2e_out}/${_file}" "${_e2e_src}/embed.cmake"
    COMMENT "embed ${_file}" VERBATIM)
endforeach()
set(_e2e_link_embedded "${_e2e_out}/gen/drv_kernels_ptx.c" "${_e2e_out}/gen/link_kernels_a_ptx.c"
  "${_e2e_out}/gen/link_kernels_b_ptx.c" "${_e2e_out}/gen/link_kernels_a_cubin.c"
  "${_e2e_out}/gen/link_kernels_b_cubin.c" "${_e2e_out}/gen/link_kernels_b_fatbin.c")

add_custom_target(vgpu_e2e_programs ALL DEPENDS
  "${_e2e_out}/rt_basic_static" "${_e2e_out}/rt_basic_shared" "${_e2e_out}/rt_basic_ptx"
  "${_e2e_out}/rt_basic.cubin" "${_e2e_out}/drv_kernels.cubin" "${_e2e_out}/drv_kernels.ptx"
  "${_e2e_out}/rt_work" "${_e2e_out}/rt_work.cubin" "${_e2e_out}/link_kernels_a.cubin")
set(VGPU_E2E_RT_BASIC_PTX "${_e2e_out}/rt_basic_ptx")
set(VGPU_E2E_DRV_PTX "${_e2e_out}/drv_kernels.ptx")

# ---------------------------------------------------------------------------------
# C programs linked against vgpu's libcuda (-L${CMAKE_BINARY_DIR}/lib -lcuda)

set(_e2e_guest_libdir "${CMAKE_BINARY_DIR}/lib")
find_package(Threads REQUIRED)

add_executable(vgpu_e2e_drv_basic "${_e2e_src}/drv_basic.c"
  "${_e2e_out}/gen/drv_kernels_fatbin.c" "${_e2e_out}/gen/drv_kernels_cubin.c")
add_executable(vgpu_e2e_unreachable "${_e2e_src}/unreachable.c")
add_executable(vgpu_e2e_drv_threads "${_e2e_src}/drv_threads.c")
add_executable(vgpu_e2e_drv_vmm "${_e2e_src}/drv_vmm.c")
add_executable(vgpu_e2e_hold_memory "${_e2e_src}/hold_memory.c")
add_executable(vgpu_e2e_drv_mapped "${_e2e_src}/drv_mapped.c" "${_e2e_out}/gen/drv_kernels_fatbin.c")
add_executable(vgpu_e2e_drv_pipeline "${_e2e_src}/drv_pipeline.c" "${_e2e_out}/gen/drv_kernels_fatbin.c")
add_executable(vgpu_e2e_drv_link "${_e2e_src}/drv_link.c" ${_e2e_link_embedded})
add_executable(vgpu_e2e_drv_quota "${_e2e_src}/drv_quota.c")
add_executable(vgpu_e2e_auth_probe "${_e2e_src}/auth_probe.c")
add_executable(vgpu_e2e_fault_client "${_e2e_src}/fault_client.c" "${_e2e_out}/gen/drv_kernels_fatbin.c")
foreach(_t vgpu_e2e_drv_basic vgpu_e2e_unreachable vgpu_e2e_drv_threads vgpu_e2e_drv_vmm vgpu_e2e_hold_memory
           vgpu_e2e_drv_mapped vgpu_e2e_drv_pipeline vgpu_e2e_drv_link vgpu_e2e_drv_quota vgpu_e2e_auth_probe
           vgpu_e2e_fault_client)
  target_include_directories(${_t} PRIVATE "${_e2e_src}" "${VGPU_E2E_CUDA_INCLUDE}")
  target_compile_options(${_t} PRIVATE ${_e2e_c_warnings})
  target_link_directories(${_t} PRIVATE "${_e2e_guest_libdir}")
  target_link_libraries(${_t} PRIVATE -lcuda Threads::Threads ${CMAKE_DL_LIBS})
  set_target_properties(${_t} PROPERTIES C_STANDARD 11 C_EXTENSIONS ON RUNTIME_OUTPUT_DIRECTORY "${_e2e_out}")
  if(TARGET cuda_guest)
    add_dependencies(${_t} cuda_guest)
  endif()
endforeach()
set_target_properties(vgpu_e2e_drv_basic PROPERTIES OUTPUT_NAME drv_basic)
set_target_properties(vgpu_e2e_unreachable PROPERTIES OUTPUT_NAME unreachable)
set_target_properties(vgpu_e2e_drv_threads PROPERTIES OUTPUT_NAME drv_threads)
set_target_properties(vgpu_e2e_hold_memory PROPERTIES OUTPUT_NAME hold_memory)
set_target_properties(vgpu_e2e_drv_vmm PROPERTIES OUTPUT_NAME drv_vmm)
set_target_properties(vgpu_e2e_drv_mapped PROPERTIES OUTPUT_NAME drv_mapped)
set_target_properties(vgpu_e2e_drv_pipeline PROPERTIES OUTPUT_NAME drv_pipeline)
set_target_properties(vgpu_e2e_drv_link PROPERTIES OUTPUT_NAME drv_link)
set_target_properties(vgpu_e2e_drv_quota PROPERTIES OUTPUT_NAME drv_quota)
set_target_properties(vgpu_e2e_auth_probe PROPERTIES OUTPUT_NAME auth_probe)
set_target_properties(vgpu_e2e_fault_client PROPERTIES OUTPUT_NAME fault_client)
# unreachable's rt mode: static cudart, which dlopens libcuda.so.1 itself
target_link_libraries(vgpu_e2e_unreachable PRIVATE "${VGPU_E2E_CUDART_STATIC}" rt)
# the generated sources are not ours to lint
set_source_files_properties("${_e2e_out}/gen/drv_kernels_fatbin.c" "${_e2e_out}/gen/drv_kernels_cubin.c"
  ${_e2e_link_embedded} PROPERTIES GENERATED TRUE COMPILE_OPTIONS "-w")

# QEMU's ivshmem-doorbell device, simulated for the e2e mode ivshmem-doorbell.
add_executable(vgpu_e2e_ivshmem_qemu_sim "${_e2e_src}/ivshmem_qemu_sim.c")
target_compile_options(vgpu_e2e_ivshmem_qemu_sim PRIVATE ${_e2e_c_warnings})
set_target_properties(vgpu_e2e_ivshmem_qemu_sim PROPERTIES
  C_STANDARD 11 C_EXTENSIONS ON OUTPUT_NAME ivshmem_qemu_sim RUNTIME_OUTPUT_DIRECTORY "${_e2e_out}")
add_executable(vgpu_e2e_probe "${_e2e_src}/e2e_probe.c")
target_compile_options(vgpu_e2e_probe PRIVATE ${_e2e_c_warnings})
set_target_properties(vgpu_e2e_probe PROPERTIES
  C_STANDARD 11 C_EXTENSIONS ON OUTPUT_NAME e2e_probe RUNTIME_OUTPUT_DIRECTORY "${_e2e_out}")

# ---------------------------------------------------------------------------------
# tests

add_test(NAME e2e_plugin_symbols
  COMMAND bash "${_e2e_src}/check_symbols.sh" "${_e2e_out}/rt_basic.cubin" "${_e2e_out}/drv_kernels.cubin"
          "${_e2e_out}/rt_work.cubin" "${_e2e_out}/link_kernels_a.cubin" --
          $<TARGET_FILE:vgpu_e2e_rt_kernels> $<TARGET_FILE:vgpu_e2e_drv_kernels> $<TARGET_FILE:vgpu_e2e_work_kernels>)
set_tests_properties(e2e_plugin_symbols PROPERTIES LABELS "e2e" TIMEOUT 60 SKIP_RETURN_CODE 77)

if(TARGET vgpud)
  set(_e2e_vgpud "$<TARGET_FILE:vgpud>")
else()
  set(_e2e_vgpud "${CMAKE_BINARY_DIR}/bin/vgpud")
endif()
if(TARGET vgpu)
  set(_e2e_vgpu "$<TARGET_FILE:vgpu>")
else()
  set(_e2e_vgpu "${CMAKE_BINARY_DIR}/bin/vgpu")
endif()
math(EXPR _e2e_ctest_timeout "${VGPU_E2E_TIMEOUT} + 60")
set(_e2e_env
  "VGPU_E2E_BIN=${CMAKE_BINARY_DIR}/bin"
  "VGPU_E2E_VGPUD=${_e2e_vgpud}"
  "VGPU_E2E_VGPU=${_e2e_vgpu}"
  "VGPU_E2E_LIB=${_e2e_guest_libdir}"
  "VGPU_E2E_PLUGINS=${_e2e_plugins}"
  "VGPU_E2E_PROBE=$<TARGET_FILE:vgpu_e2e_probe>"
  "VGPU_E2E_QEMU_SIM=$<TARGET_FILE:vgpu_e2e_ivshmem_qemu_sim>"
  "VGPU_E2E_BACKEND=${VGPU_E2E_BACKEND}"
  "VGPU_E2E_EMU_MEMORY=${VGPU_E2E_EMU_MEMORY}"
  "VGPU_E2E_TIMEOUT=${VGPU_E2E_TIMEOUT}")
if(VGPU_SANITIZE)
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libasan.so
                  OUTPUT_VARIABLE _e2e_libasan OUTPUT_STRIP_TRAILING_WHITESPACE)
  list(APPEND _e2e_env "VGPU_E2E_PRELOAD=${_e2e_libasan}")
endif()

# vgpu_e2e_add(NAME MODE PROGRAM [ARGS...])
function(vgpu_e2e_add name mode program)
  add_test(NAME ${name} COMMAND bash "${_e2e_src}/run_e2e.sh" ${mode} ${program} ${ARGN})
  set_tests_properties(${name} PROPERTIES
    LABELS "e2e"
    TIMEOUT ${_e2e_ctest_timeout}
    ENVIRONMENT "${_e2e_env}")
endfunction()

foreach(_tr unix tcp ivshmem)
  vgpu_e2e_add(e2e_rt_basic_static_${_tr} ${_tr} "${_e2e_out}/rt_basic_static")
  vgpu_e2e_add(e2e_rt_basic_shared_${_tr} ${_tr} "${_e2e_out}/rt_basic_shared")
  vgpu_e2e_add(e2e_drv_basic_${_tr} ${_tr} $<TARGET_FILE:vgpu_e2e_drv_basic>)
  vgpu_e2e_add(e2e_rt_work_${_tr} ${_tr} "${_e2e_out}/rt_work")
  vgpu_e2e_add(e2e_drv_threads_${_tr} ${_tr} $<TARGET_FILE:vgpu_e2e_drv_threads>)
  vgpu_e2e_add(e2e_smi_${_tr} ${_tr} "${_e2e_src}/smi_check.sh")
  set_property(TEST e2e_smi_${_tr} APPEND PROPERTY ENVIRONMENT "VGPU_E2E_HOLD=$<TARGET_FILE:vgpu_e2e_hold_memory>")
  vgpu_e2e_add(e2e_drv_vmm_${_tr} ${_tr} $<TARGET_FILE:vgpu_e2e_drv_vmm>)
  vgpu_e2e_add(e2e_drv_mapped_${_tr} ${_tr} $<TARGET_FILE:vgpu_e2e_drv_mapped>)
  vgpu_e2e_add(e2e_drv_pipeline_${_tr} ${_tr} $<TARGET_FILE:vgpu_e2e_drv_pipeline>)
  if(_tr STREQUAL "unix")
    set_property(TEST e2e_drv_pipeline_${_tr} APPEND PROPERTY ENVIRONMENT "VGPU_E2E_EXPECT_SHARED=1")
  else()
    set_property(TEST e2e_drv_pipeline_${_tr} APPEND PROPERTY ENVIRONMENT "VGPU_E2E_EXPECT_SHARED=0")
  endif()
  vgpu_e2e_add(e2e_drv_link_${_tr} ${_tr} $<TARGET_FILE:vgpu_e2e_drv_link>)
  # a client under a 64 MiB device memory quota and a 16 MiB pinned host memory limit
  vgpu_e2e_add(e2e_drv_quota_${_tr} ${_tr} $<TARGET_FILE:vgpu_e2e_drv_quota> 67108864 16777216)
  set_property(TEST e2e_drv_quota_${_tr} APPEND PROPERTY ENVIRONMENT "VGPU_E2E_CLIENT_MEMORY_LIMIT=64M"
               "VGPU_E2E_CLIENT_PINNED_LIMIT=16M")
  vgpu_e2e_add(e2e_unreachable_drv_${_tr} dead-${_tr} $<TARGET_FILE:vgpu_e2e_unreachable> drv)
  vgpu_e2e_add(e2e_unreachable_rt_${_tr} dead-${_tr} $<TARGET_FILE:vgpu_e2e_unreachable> rt)
  if(NOT VGPU_E2E_BACKEND STREQUAL "emu")
    # the driver must JIT these: no emu (its kernels need the cubin's parameter layout)
    vgpu_e2e_add(e2e_rt_basic_ptx_${_tr} ${_tr} "${_e2e_out}/rt_basic_ptx")
    vgpu_e2e_add(e2e_drv_basic_ptx_${_tr} ${_tr} $<TARGET_FILE:vgpu_e2e_drv_basic> "${_e2e_out}/drv_kernels.ptx")
  endif()
endforeach()

# vsock (run_e2e.sh vsock): vgpud on vsock:PORT, the program at vsock:1:PORT (the local
# CID) with the token; a skip (77) where the vsock_loopback module is not loaded. A guest
# whose vsock connect fails gets a prompt, clean cuInit error on every machine.
vgpu_e2e_add(e2e_drv_basic_vsock vsock $<TARGET_FILE:vgpu_e2e_drv_basic>)
vgpu_e2e_add(e2e_smi_vsock vsock "${_e2e_src}/smi_check.sh")
set_property(TEST e2e_smi_vsock APPEND PROPERTY ENVIRONMENT "VGPU_E2E_HOLD=$<TARGET_FILE:vgpu_e2e_hold_memory>")
set_tests_properties(e2e_drv_basic_vsock e2e_smi_vsock PROPERTIES SKIP_RETURN_CODE 77 LABELS "e2e;vsock")
vgpu_e2e_add(e2e_unreachable_drv_vsock dead-vsock $<TARGET_FILE:vgpu_e2e_unreachable> drv)

# TLS over tcp (run_e2e.sh tcp-tls*, tls-refused-*; certificates made with the openssl
# command at test time, a skip without it): programs over TLS, with a client certificate,
# and each mismatch failing cleanly with both sides saying why.
foreach(_p drv_basic drv_threads drv_pipeline)
  vgpu_e2e_add(e2e_${_p}_tcp-tls tcp-tls $<TARGET_FILE:vgpu_e2e_${_p}>)
endforeach()
set_property(TEST e2e_drv_pipeline_tcp-tls APPEND PROPERTY ENVIRONMENT "VGPU_E2E_EXPECT_SHARED=0")
vgpu_e2e_add(e2e_drv_basic_tcp-tls-client tcp-tls-client $<TARGET_FILE:vgpu_e2e_drv_basic>)
foreach(_case wrong-ca wrong-name plain-guest plain-daemon no-client-cert other-client-cert bad-ca-file
              cert-without-key)
  vgpu_e2e_add(e2e_tls_refused_${_case} tls-refused-${_case} $<TARGET_FILE:vgpu_e2e_unreachable> drv)
endforeach()
vgpu_e2e_add(e2e_smi_tcp-tls tcp-tls "${_e2e_src}/smi_check.sh")
set_property(TEST e2e_smi_tcp-tls APPEND PROPERTY ENVIRONMENT "VGPU_E2E_HOLD=$<TARGET_FILE:vgpu_e2e_hold_memory>")
set(_e2e_tls_tests e2e_smi_tcp-tls e2e_drv_basic_tcp-tls e2e_drv_threads_tcp-tls e2e_drv_pipeline_tcp-tls
    e2e_drv_basic_tcp-tls-client e2e_tls_refused_wrong-ca e2e_tls_refused_wrong-name
    e2e_tls_refused_plain-guest e2e_tls_refused_plain-daemon e2e_tls_refused_no-client-cert
    e2e_tls_refused_other-client-cert e2e_tls_refused_bad-ca-file e2e_tls_refused_cert-without-key)
set_tests_properties(${_e2e_tls_tests} PROPERTIES SKIP_RETURN_CODE 77 LABELS "e2e;tls")

# the pipeline without batching (every posted frame written by itself)
vgpu_e2e_add(e2e_drv_pipeline_nobatch_unix unix $<TARGET_FILE:vgpu_e2e_drv_pipeline>)
set_property(TEST e2e_drv_pipeline_nobatch_unix APPEND PROPERTY ENVIRONMENT "VGPU_BATCH=0")
# ... and without shared memory on a unix socket (pinned copies travel on the wire)
vgpu_e2e_add(e2e_drv_pipeline_unix-noshm unix-noshm $<TARGET_FILE:vgpu_e2e_drv_pipeline>)
set_property(TEST e2e_drv_pipeline_unix-noshm APPEND PROPERTY ENVIRONMENT "VGPU_E2E_EXPECT_SHARED=0")
# The main programs once more over a unix socket without the shared-memory upgrade
# (VGPU_SHM=0), so that the socket path stays covered: ctests *_unix-noshm.
foreach(_p rt_basic_static rt_work)
  vgpu_e2e_add(e2e_${_p}_unix-noshm unix-noshm "${_e2e_out}/${_p}")
endforeach()
foreach(_p drv_basic drv_threads drv_vmm drv_mapped)
  vgpu_e2e_add(e2e_${_p}_unix-noshm unix-noshm $<TARGET_FILE:vgpu_e2e_${_p}>)
endforeach()
vgpu_e2e_add(e2e_smi_unix-noshm unix-noshm "${_e2e_src}/smi_check.sh")
set_property(TEST e2e_smi_unix-noshm APPEND PROPERTY ENVIRONMENT "VGPU_E2E_HOLD=$<TARGET_FILE:vgpu_e2e_hold_memory>")

# cuBLAS/cuBLASLt (CUDA toolkit) and cuDNN (toolkit directory or the system's): handles and
# host<->device copies through vgpu (blas_basic.cu, dnn_basic.cu). Without the library (or its
# header) the tests still exist and skip with a message.

find_library(VGPU_E2E_CUBLAS cublas HINTS "${_e2e_cuda_libdir}" NO_DEFAULT_PATH)
find_library(VGPU_E2E_CUBLASLT cublasLt HINTS "${_e2e_cuda_libdir}" NO_DEFAULT_PATH)
find_path(VGPU_E2E_CUDNN_INCLUDE cudnn.h HINTS "${VGPU_E2E_CUDA_INCLUDE}" /usr/include /usr/include/x86_64-linux-gnu)
find_library(VGPU_E2E_CUDNN cudnn HINTS "${_e2e_cuda_libdir}" /usr/lib/x86_64-linux-gnu /usr/lib64)
set(_e2e_extra_programs)
if(VGPU_E2E_CUBLAS AND VGPU_E2E_CUBLASLT AND EXISTS "${VGPU_E2E_CUDA_INCLUDE}/cublas_v2.h")
  add_custom_command(OUTPUT "${_e2e_out}/blas_basic"
    COMMAND ${_e2e_nvcc} -std=c++17 -O2 ${_e2e_sass} -cudart static
            -o "${_e2e_out}/blas_basic" "${_e2e_src}/blas_basic.cu"
            -L${_e2e_cuda_libdir} -lcublas -lcublasLt -Xlinker -rpath=${_e2e_cuda_libdir}
    DEPENDS "${_e2e_src}/blas_basic.cu" "${_e2e_src}/check.h" COMMENT "nvcc blas_basic (cuBLAS)" VERBATIM)
  list(APPEND _e2e_extra_programs "${_e2e_out}/blas_basic")
  # the GPU suite's GEMM comparison (runs cuBLAS kernels: built here, run by tests/gpu/run only)
  add_custom_command(OUTPUT "${CMAKE_BINARY_DIR}/tests/gpu/blas_gemm"
    COMMAND ${CMAKE_COMMAND} -E make_directory "${CMAKE_BINARY_DIR}/tests/gpu"
    COMMAND ${_e2e_nvcc} -std=c++17 -O2 ${_e2e_sass} -cudart static
            -o "${CMAKE_BINARY_DIR}/tests/gpu/blas_gemm" "${CMAKE_SOURCE_DIR}/tests/gpu/blas_gemm.cu"
            -L${_e2e_cuda_libdir} -lcublas -lcublasLt -Xlinker -rpath=${_e2e_cuda_libdir}
    DEPENDS "${CMAKE_SOURCE_DIR}/tests/gpu/blas_gemm.cu" "${_e2e_src}/check.h" COMMENT "nvcc blas_gemm (GPU suite)" VERBATIM)
  list(APPEND _e2e_extra_programs "${CMAKE_BINARY_DIR}/tests/gpu/blas_gemm")
  set(_e2e_blas_cmd "${_e2e_out}/blas_basic")
else()
  message(STATUS "vgpu e2e: cuBLAS 13 not found in ${_e2e_cuda_libdir}: e2e_blas_basic is skipped")
  set(_e2e_blas_cmd "")
endif()
if(VGPU_E2E_CUDNN AND VGPU_E2E_CUDNN_INCLUDE)
  get_filename_component(_e2e_cudnn_libdir "${VGPU_E2E_CUDNN}" DIRECTORY)
  add_custom_command(OUTPUT "${_e2e_out}/dnn_basic"
    COMMAND ${_e2e_nvcc} -std=c++17 -O2 ${_e2e_sass} -cudart static
            -I${VGPU_E2E_CUDNN_INCLUDE} -o "${_e2e_out}/dnn_basic" "${_e2e_src}/dnn_basic.cu"
            -L${_e2e_cudnn_libdir} -lcudnn -Xlinker -rpath=${_e2e_cudnn_libdir}
    DEPENDS "${_e2e_src}/dnn_basic.cu" "${_e2e_src}/check.h" COMMENT "nvcc dnn_basic (cuDNN)" VERBATIM)
  list(APPEND _e2e_extra_programs "${_e2e_out}/dnn_basic")
  set(_e2e_dnn_cmd "${_e2e_out}/dnn_basic")
else()
  message(STATUS "vgpu e2e: cuDNN (cudnn.h, libcudnn.so) not found: e2e_dnn_basic is skipped")
  set(_e2e_dnn_cmd "")
endif()
if(_e2e_extra_programs)
  add_custom_target(vgpu_e2e_library_programs ALL DEPENDS ${_e2e_extra_programs})
endif()
foreach(_tr unix tcp)
  foreach(_lib blas dnn)
    if(_e2e_${_lib}_cmd)
      vgpu_e2e_add(e2e_${_lib}_basic_${_tr} ${_tr} "${_e2e_${_lib}_cmd}")
    else()
      add_test(NAME e2e_${_lib}_basic_${_tr}
        COMMAND sh -c "echo 'vgpu e2e: ${_lib}_basic not built (its library was not found at configure time); skipped'; exit 77")
      set_tests_properties(e2e_${_lib}_basic_${_tr} PROPERTIES LABELS "e2e" SKIP_RETURN_CODE 77)
    endif()
  endforeach()
endforeach()

# The demo program `make demo` runs (examples/hello_vgpu.cu): static cudart, as nvcc
# builds by default.
if(_e2e_nvcc)
  add_custom_command(OUTPUT "${CMAKE_BINARY_DIR}/bin/hello_vgpu"
    COMMAND ${_e2e_nvcc} -O2 ${_e2e_sass} -cudart static -o "${CMAKE_BINARY_DIR}/bin/hello_vgpu"
            "${CMAKE_SOURCE_DIR}/examples/hello_vgpu.cu"
    DEPENDS "${CMAKE_SOURCE_DIR}/examples/hello_vgpu.cu" COMMENT "nvcc hello_vgpu" VERBATIM)
  add_custom_target(hello_vgpu ALL DEPENDS "${CMAKE_BINARY_DIR}/bin/hello_vgpu")
endif()

# ---------------------------------------------------------------------------------
# CUDA_VISIBLE_DEVICES (drv_visible, which also compiles in the guest's parser to check
# it on made-up multi-device tables), Ollama's discovery sequence through dlopen
# (probe_ollama: not linked against libcuda), and a SIGKILLed client that must leave
# nothing on the daemon (killed_probe.sh + its helper killed_probe).

add_executable(vgpu_e2e_drv_visible "${_e2e_src}/drv_visible.c" "${CMAKE_SOURCE_DIR}/src/guest/cuda/visible.c")
add_executable(vgpu_e2e_killed_probe "${_e2e_src}/killed_probe.c")
foreach(_t vgpu_e2e_drv_visible vgpu_e2e_killed_probe)
  target_include_directories(${_t} PRIVATE "${_e2e_src}" "${VGPU_E2E_CUDA_INCLUDE}")
  target_compile_options(${_t} PRIVATE ${_e2e_c_warnings})
  target_link_directories(${_t} PRIVATE "${_e2e_guest_libdir}")
  target_link_libraries(${_t} PRIVATE -lcuda)
  set_target_properties(${_t} PROPERTIES C_STANDARD 11 C_EXTENSIONS ON RUNTIME_OUTPUT_DIRECTORY "${_e2e_out}")
  if(TARGET cuda_guest)
    add_dependencies(${_t} cuda_guest)
  endif()
endforeach()
set_target_properties(vgpu_e2e_drv_visible PROPERTIES OUTPUT_NAME drv_visible)
set_target_properties(vgpu_e2e_killed_probe PROPERTIES OUTPUT_NAME killed_probe)
add_executable(vgpu_e2e_probe_ollama "${_e2e_src}/probe_ollama.c")
target_include_directories(vgpu_e2e_probe_ollama PRIVATE "${VGPU_E2E_CUDA_INCLUDE}")
target_compile_options(vgpu_e2e_probe_ollama PRIVATE ${_e2e_c_warnings})
target_link_libraries(vgpu_e2e_probe_ollama PRIVATE ${CMAKE_DL_LIBS})
set_target_properties(vgpu_e2e_probe_ollama PROPERTIES
  C_STANDARD 11 C_EXTENSIONS ON OUTPUT_NAME probe_ollama RUNTIME_OUTPUT_DIRECTORY "${_e2e_out}")
if(TARGET cuda_guest)
  add_dependencies(vgpu_e2e_probe_ollama cuda_guest)
endif()

foreach(_tr unix tcp ivshmem)
  vgpu_e2e_add(e2e_drv_visible_${_tr} ${_tr} $<TARGET_FILE:vgpu_e2e_drv_visible>)
  vgpu_e2e_add(e2e_probe_ollama_${_tr} ${_tr} $<TARGET_FILE:vgpu_e2e_probe_ollama>)
endforeach()
# ivshmem-doorbell: vgpud is the ivshmem server of a simulated QEMU (ivshmem_qemu_sim):
# the guest maps the device through a fake sysfs and rings the daemon's doorbell.
foreach(_p drv_basic drv_threads drv_pipeline)
  vgpu_e2e_add(e2e_${_p}_ivshmem-doorbell ivshmem-doorbell $<TARGET_FILE:vgpu_e2e_${_p}>)
endforeach()
set_property(TEST e2e_drv_pipeline_ivshmem-doorbell APPEND PROPERTY ENVIRONMENT "VGPU_E2E_EXPECT_SHARED=0")
# killed_probe: unix (shared memory, 4 KiB rings, killed in the middle of 16 MiB copies),
# unix-noshm (the socket), tcp, and ivshmem (the killed guest is noticed by its stopped beat).
foreach(_tr unix unix-noshm tcp ivshmem)
  add_test(NAME e2e_killed_probe_${_tr}
    COMMAND bash "${_e2e_src}/killed_probe.sh" ${_tr} $<TARGET_FILE:vgpu_e2e_killed_probe>)
  set_tests_properties(e2e_killed_probe_${_tr} PROPERTIES
    LABELS "e2e" TIMEOUT ${_e2e_ctest_timeout} ENVIRONMENT "${_e2e_env}")
endforeach()

# Tenants and authentication (auth_test.sh: its own daemons, a --config file with two
# tenants, tokens over TCP, unix peer credentials against allow lists).
add_test(NAME e2e_auth
  COMMAND bash "${_e2e_src}/auth_test.sh" $<TARGET_FILE:vgpu_e2e_auth_probe> $<TARGET_FILE:vgpu_e2e_drv_quota>)
set_tests_properties(e2e_auth PROPERTIES LABELS "e2e" TIMEOUT ${_e2e_ctest_timeout} ENVIRONMENT "${_e2e_env}")

# Faults, limits and isolation (faults.sh + its helper fault_client): clients SIGKILLed at
# random moments (nothing left behind), vgpud killed and restarted under a running client
# (calls fail fast with one sticky error), another client's handles and device memory
# (refused and logged), and --max-clients/--max-lanes/--max-objects/--max-message.
foreach(_tr unix unix-noshm tcp ivshmem)
  add_test(NAME e2e_fault_loop_${_tr}
    COMMAND bash "${_e2e_src}/faults.sh" loop ${_tr} $<TARGET_FILE:vgpu_e2e_fault_client>
            $<TARGET_FILE:vgpu_e2e_drv_basic>)
  add_test(NAME e2e_fault_restart_${_tr}
    COMMAND bash "${_e2e_src}/faults.sh" restart ${_tr} $<TARGET_FILE:vgpu_e2e_fault_client>)
  set_tests_properties(e2e_fault_loop_${_tr} e2e_fault_restart_${_tr} PROPERTIES
    LABELS "e2e;faults" TIMEOUT ${_e2e_ctest_timeout} ENVIRONMENT "${_e2e_env}")
endforeach()
foreach(_tr unix tcp)
  add_test(NAME e2e_fault_foreign_${_tr}
    COMMAND bash "${_e2e_src}/faults.sh" foreign ${_tr} $<TARGET_FILE:vgpu_e2e_fault_client>)
  add_test(NAME e2e_fault_limits_${_tr}
    COMMAND bash "${_e2e_src}/faults.sh" limits ${_tr} $<TARGET_FILE:vgpu_e2e_fault_client>)
  add_test(NAME e2e_fault_flood_${_tr}
    COMMAND bash "${_e2e_src}/faults.sh" flood ${_tr} $<TARGET_FILE:vgpu_e2e_fault_client>
            $<TARGET_FILE:vgpu_e2e_drv_basic>)
  set_tests_properties(e2e_fault_foreign_${_tr} e2e_fault_limits_${_tr} e2e_fault_flood_${_tr} PROPERTIES
    LABELS "e2e;faults" TIMEOUT ${_e2e_ctest_timeout} ENVIRONMENT "${_e2e_env}")
  # test_daemon (tests/e2e/daemon.cmake, included after this file) holds the flood
  set_property(TEST e2e_fault_flood_${_tr} APPEND PROPERTY ENVIRONMENT
    "VGPU_E2E_TEST_DAEMON=${CMAKE_BINARY_DIR}/tests/e2e/test_daemon")
endforeach()
# the guest side of a stalled peer: a fake daemon that stops midway through a reply
add_test(NAME e2e_fault_stall_unix
  COMMAND bash "${_e2e_src}/faults.sh" stall unix $<TARGET_FILE:vgpu_e2e_fault_client>)
set_tests_properties(e2e_fault_stall_unix PROPERTIES
  LABELS "e2e;faults" TIMEOUT ${_e2e_ctest_timeout} ENVIRONMENT "${_e2e_env}")

add_test(NAME e2e_killed_probe_tcp-tls
  COMMAND bash "${_e2e_src}/killed_probe.sh" tcp-tls $<TARGET_FILE:vgpu_e2e_killed_probe>)
set_tests_properties(e2e_killed_probe_tcp-tls PROPERTIES
  LABELS "e2e;tls" TIMEOUT ${_e2e_ctest_timeout} ENVIRONMENT "${_e2e_env}" SKIP_RETURN_CODE 77)

# make install / make uninstall into a temporary DESTDIR, and drv_basic through the
# installed vgpud and libraries configured by client.conf alone (tests/e2e/install_test.sh).
add_test(NAME install_layout_e2e
  COMMAND bash "${_e2e_src}/install_test.sh" "${CMAKE_SOURCE_DIR}" "${CMAKE_BINARY_DIR}"
          $<TARGET_FILE:vgpu_e2e_drv_basic>)
set_tests_properties(install_layout_e2e PROPERTIES LABELS "e2e" TIMEOUT 600
  ENVIRONMENT "VGPU_E2E_PROBE=$<TARGET_FILE:vgpu_e2e_probe>;VGPU_E2E_PLUGINS=${_e2e_plugins}")
