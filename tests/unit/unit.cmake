# Unit tests that need no GPU and no daemon: codec and frames, shared-memory rings, mirrored-memory diffs,
# export tables (with a stub of the guest internals), cuGetProcAddress against the
# built guest library.
add_executable(test_wire tests/unit/test_wire.c)
target_link_libraries(test_wire PRIVATE vgpu_common)
add_test(NAME unit_wire COMMAND test_wire)

add_executable(test_export_tables tests/unit/test_export_tables.c tests/unit/guest_stubs.c
               src/guest/cuda/export_tables.c src/guest/cuda/hmac_md2.c)
target_link_libraries(test_export_tables PRIVATE vgpu_common)
add_test(NAME unit_export_tables COMMAND test_export_tables)

add_executable(test_procaddr tests/unit/test_procaddr.c)
target_link_libraries(test_procaddr PRIVATE ${CMAKE_DL_LIBS})
add_dependencies(test_procaddr cuda_guest)
add_test(NAME unit_procaddr COMMAND test_procaddr $<TARGET_FILE:cuda_guest>
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})

add_executable(test_mirror_diff tests/unit/test_mirror_diff.c)
target_link_libraries(test_mirror_diff PRIVATE vgpu_common)
add_test(NAME unit_mirror_diff COMMAND test_mirror_diff)

add_executable(test_shm_ring tests/unit/test_shm_ring.c)
target_link_libraries(test_shm_ring PRIVATE vgpu_common)
add_test(NAME unit_shm_ring COMMAND test_shm_ring)
set_tests_properties(unit_shm_ring PROPERTIES TIMEOUT 120)

# The ivshmem transport (src/transport/ivshmem.c) with both ends in one process, on
# region files in a temporary directory: setup, traffic, slots, close, hand-off, silent
# and hostile guests (slot words written by hand), daemon restart, a fake sysfs for
# ivshmem:auto.
add_executable(test_ivshmem tests/unit/test_ivshmem.c)
target_link_libraries(test_ivshmem PRIVATE vgpu_common Threads::Threads)
add_test(NAME unit_ivshmem COMMAND test_ivshmem)
set_tests_properties(unit_ivshmem PROPERTIES TIMEOUT 120)

# vgpud's configuration file parser (src/server/config.c).
add_executable(test_config tests/unit/test_config.c src/server/config.c)
target_link_libraries(test_config PRIVATE vgpu_common)
add_test(NAME unit_config COMMAND test_config)

# The compute share's scheduler and engine lock, across forked processes (src/server/sched.c).
add_executable(test_sched tests/unit/test_sched.c src/server/sched.c)
target_link_libraries(test_sched PRIVATE vgpu_common Threads::Threads)
add_test(NAME unit_sched COMMAND test_sched)

# SHA-256 / HMAC-SHA256 (FIPS 180-2, RFC 4231 vectors) and the handshake's proofs and
# decoders (src/common/auth.c, src/server/handshake.c).
add_executable(test_auth tests/unit/test_auth.c src/server/handshake.c src/server/config.c)
target_link_libraries(test_auth PRIVATE vgpu_common)
add_test(NAME unit_auth COMMAND test_auth)

# TLS over TCP: a guest connection, the daemon's TLS accept and relay, a slow echo worker
# (test_tls.c; certificates made at test time, a skip without the openssl command).
add_executable(test_tls tests/unit/test_tls.c)
target_link_libraries(test_tls PRIVATE vgpu_common)
add_test(NAME unit_tls COMMAND bash ${CMAKE_SOURCE_DIR}/tests/unit/run_tls_unit.sh $<TARGET_FILE:test_tls>)
set_tests_properties(unit_tls PROPERTIES TIMEOUT 180 SKIP_RETURN_CODE 77 LABELS "tls")

# The guest libraries load OpenSSL only when VGPU_TLS_CA asks for it: no NEEDED entry.
add_test(NAME unit_guest_no_libssl COMMAND bash -c
  "command -v readelf >/dev/null || exit 77; for f in \"$0\" \"$1\"; do readelf -d \"$f\" | grep -E 'NEEDED.*(libssl|libcrypto)' && { echo \"$f depends on OpenSSL\"; exit 1; }; done; echo 'no libssl/libcrypto NEEDED'"
  $<TARGET_FILE:cuda_guest> $<TARGET_FILE:nvml_guest>)
set_tests_properties(unit_guest_no_libssl PROPERTIES SKIP_RETURN_CODE 77 LABELS "tls")

# The guest's client.conf parser (src/common/client_conf.c): good file, malformed lines,
# environment precedence.
add_executable(test_client_conf tests/unit/test_client_conf.c)
target_link_libraries(test_client_conf PRIVATE vgpu_common)
add_test(NAME unit_client_conf COMMAND test_client_conf)

# vsock addresses (src/transport/vsock.c), with no vsock needed: good and bad addresses,
# and a connect that cannot succeed failing promptly.
add_executable(test_vsock tests/unit/test_vsock.c)
target_link_libraries(test_vsock PRIVATE vgpu_common)
add_test(NAME unit_vsock COMMAND test_vsock)

# vgpud refuses to listen on vsock without a token (vsock reaches other machines, as TCP
# does), naming the address; a bad vsock address is refused with the expected form.
add_test(NAME unit_vgpud_vsock_needs_token COMMAND bash -c
  "out=$(timeout 20 \"$0\" --backend emu --listen vsock:5000 2>&1); rc=$?; echo \"$out\"; [ $rc = 2 ] && echo \"$out\" | grep -q 'listening on vsock:5000 needs a token' || { echo \"FAIL: status $rc\"; exit 1; }; out=$(timeout 20 \"$0\" --backend emu --tcp-no-auth --listen vsock:0 2>&1); rc=$?; echo \"$out\"; [ $rc != 0 ] && echo \"$out\" | grep -q 'expected vsock:PORT' || { echo \"FAIL: bad address, status $rc\"; exit 1; }; echo PASS"
  $<TARGET_FILE:vgpud>)

# The same for ivshmem regions (they reach a virtual machine): both listener kinds are
# refused without a token, naming the address, and create nothing.
add_test(NAME unit_vgpud_ivshmem_needs_token COMMAND bash -c
  "d=$(mktemp -d); for a in ivshmem:$d/region ivshmem-doorbell:$d/sock; do out=$(timeout 20 \"$0\" --backend emu --listen $a 2>&1); rc=$?; echo \"$out\"; [ $rc = 2 ] && echo \"$out\" | grep -q \"listening on $a needs a token\" || { echo \"FAIL: $a: status $rc\"; exit 1; }; done; n=$(ls -A $d | wc -l); rm -rf $d; [ $n = 0 ] || { echo 'FAIL: files were created'; exit 1; }; echo PASS"
  $<TARGET_FILE:vgpud>)
