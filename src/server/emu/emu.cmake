# emu backend (CPU implementation of the driver table in src/server/backend.h): the
# static library vgpu_emu, its unit test and the kernel plugin the test launches.
# Included by the top-level CMakeLists.txt after vgpu_common is defined.

if(NOT TARGET vgpu_emu)
  file(GLOB VGPU_EMU_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/server/emu/*.c)
  add_library(vgpu_emu STATIC ${VGPU_EMU_SOURCES})
  target_link_libraries(vgpu_emu PUBLIC vgpu_common)
endif()
# dlopen/dlsym of kernel plugins, pthread locks.
target_link_libraries(vgpu_emu PUBLIC ${CMAKE_DL_LIBS} Threads::Threads)

# The test's kernels: tests/unit/test_emu.c built again with VGPU_EMU_TEST_PLUGIN as a
# loadable module exporting vgpu_emu_<kernel> functions.
add_library(test_emu_plugin MODULE ${CMAKE_SOURCE_DIR}/tests/unit/test_emu.c)
target_compile_definitions(test_emu_plugin PRIVATE VGPU_EMU_TEST_PLUGIN)

add_executable(test_emu ${CMAKE_SOURCE_DIR}/tests/unit/test_emu.c)
target_link_libraries(test_emu PRIVATE vgpu_emu vgpu_common)
add_dependencies(test_emu test_emu_plugin)

# argv[1] is the plugin; the test sets VGPU_EMU_KERNELS from it.
add_test(NAME unit_emu COMMAND test_emu $<TARGET_FILE:test_emu_plugin>)
