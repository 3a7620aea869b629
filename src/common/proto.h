/*
 * Protocol constants shared by guest and daemon: wire op numbers (generated from
 * spec/driver.spec into gen/ops.h) and the layouts that both sides must agree on.
 * docs/protocol.md describes every message.
 */
#ifndef VGPU_PROTO_H
#define VGPU_PROTO_H

#include "common/wire.h"
#include "gen/ops.h"

enum vgpu_op {
#define VGPU_OP_ENUM(name, id) VGPU_OP_##name = id,
    VGPU_OPS(VGPU_OP_ENUM)
#undef VGPU_OP_ENUM
};

const char *vgpu_op_name(unsigned op);

/* Memset element widths (MEMSET op). */
enum { VGPU_MEMSET_8 = 1, VGPU_MEMSET_16 = 2, VGPU_MEMSET_32 = 4 };

/* Launch kinds (LAUNCH op). */
enum { VGPU_LAUNCH_PLAIN = 0, VGPU_LAUNCH_COOPERATIVE = 1, VGPU_LAUNCH_EX = 2 };

/* HOST_REGISTER flags bit of vgpu's own: the guest mirrors pinned memory a graph names
 * (not a registration the application asked for). The daemon registers it with the
 * lane thread's capture mode relaxed, so an open stream capture is not invalidated. */
#define VGPU_HOST_REGISTER_FOR_GRAPH 0x80000000u

/* Default server address when neither VGPU_SERVER nor client.conf's server gives one:
 * where the installed vgpud.service listens (RuntimeDirectory=vgpud; /run, not /tmp,
 * where any user could create the socket first). */
#define VGPU_DEFAULT_SERVER "unix:/run/vgpud/vgpud.sock"

/* The session token a lane presents to join its process's session. */
#define VGPU_TOKEN_BYTES 16

/* HELLO kinds */
enum { VGPU_HELLO_NEW_SESSION = 0, VGPU_HELLO_JOIN_SESSION = 1 };

/* HELLO features: an optional u32 after the request's token (what the guest can use)
 * and, only when the request had one, after the reply's message (what the daemon
 * grants). A daemon or guest without the word has none of them. */
#define VGPU_FEATURE_SHM 0x1u /* this unix-socket lane may move to shared memory (SHM_UPGRADE) */

#endif
