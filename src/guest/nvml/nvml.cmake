# The guest NVML library, include()d by the top-level CMakeLists.txt after the targets
# cuda_guest and vgpu_common exist (and after tests/e2e/e2e.cmake, for its test):
#
#   build/lib/libnvidia-ml.so.1 (+ libnvidia-ml.so): src/guest/nvml/*.c, the shared guest
#   transport (vgpu_guest_common: src/guest/common/) and the generated NOT_SUPPORTED stubs
#   gen/nvml_stubs.c, exporting exactly spec/nvml_exports.txt (gen/nvml_exports.map).
#
# Test (label "e2e", when the e2e suite is configured): e2e_nvml_basic_{unix,tcp} runs
# tests/e2e/nvml_basic.c against a private vgpud, as every e2e program runs.

file(GLOB VGPU_NVML_GUEST_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/guest/nvml/*.c)
set(VGPU_GEN_NVML_EXPORTS_MAP ${CMAKE_SOURCE_DIR}/gen/nvml_exports.map)
add_library(nvml_guest SHARED ${VGPU_NVML_GUEST_SOURCES} ${CMAKE_SOURCE_DIR}/gen/nvml_stubs.c)
set_target_properties(nvml_guest PROPERTIES OUTPUT_NAME nvidia-ml SOVERSION 1 VERSION 1
                      LINK_DEPENDS ${VGPU_GEN_NVML_EXPORTS_MAP})
target_link_libraries(nvml_guest PRIVATE vgpu_guest_common vgpu_common)
target_link_options(nvml_guest PRIVATE -Wl,--version-script=${VGPU_GEN_NVML_EXPORTS_MAP} -Wl,--no-undefined)

if(COMMAND vgpu_e2e_add AND VGPU_E2E_OUT_DIR)
  add_executable(vgpu_e2e_nvml_basic ${CMAKE_SOURCE_DIR}/tests/e2e/nvml_basic.c)
  target_include_directories(vgpu_e2e_nvml_basic PRIVATE ${CMAKE_SOURCE_DIR}/src ${VGPU_CUDA_INCLUDE_DIR})
  target_link_directories(vgpu_e2e_nvml_basic PRIVATE ${CMAKE_BINARY_DIR}/lib)
  target_link_libraries(vgpu_e2e_nvml_basic PRIVATE -lcuda ${CMAKE_DL_LIBS})
  target_compile_definitions(vgpu_e2e_nvml_basic PRIVATE VGPU_NVML_EXPORTS="${CMAKE_SOURCE_DIR}/spec/nvml_exports.txt")
  set_target_properties(vgpu_e2e_nvml_basic PROPERTIES OUTPUT_NAME nvml_basic
                        RUNTIME_OUTPUT_DIRECTORY ${VGPU_E2E_OUT_DIR})
  add_dependencies(vgpu_e2e_nvml_basic cuda_guest nvml_guest)
  foreach(_tr unix unix-noshm tcp)
    vgpu_e2e_add(e2e_nvml_basic_${_tr} ${_tr} $<TARGET_FILE:vgpu_e2e_nvml_basic>)
  endforeach()
  # NVML's own session over TLS (the guest NVML library loads libssl itself)
  vgpu_e2e_add(e2e_nvml_basic_tcp-tls tcp-tls $<TARGET_FILE:vgpu_e2e_nvml_basic>)
  set_tests_properties(e2e_nvml_basic_tcp-tls PROPERTIES SKIP_RETURN_CODE 77 LABELS "e2e;tls")
endif()
