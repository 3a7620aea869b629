/*
 * TLS for TCP connections (OpenSSL), as a property of a connection rather than a
 * transport of its own: a TCP vgpu_conn with c->tls set reads and writes through its
 * TLS session, so the frame code above never knows. See docs/architecture.md ("TLS").
 *
 * The guest libraries load libssl.so.3 with dlopen at first use (they must not depend
 * on it); vgpud links OpenSSL and installs its entry points with vgpu_tls_use_linked.
 *
 * Guest: vgpu_connect("tcp:...") runs the TLS handshake itself when VGPU_TLS_CA is set
 *        (VGPU_TLS_CERT + VGPU_TLS_KEY: optional client certificate).
 * Daemon: vgpu_tls_server_init once; vgpu_tls_accept on each accepted TCP connection;
 *        vgpu_tls_handoff_fd gives the plain end of a socket pair to hand to a worker
 *        in the connection's place; vgpu_tls_relay then carries the bytes between
 *        the TLS session and that pair until either side ends.
 */
#ifndef VGPU_TRANSPORT_TLS_H
#define VGPU_TRANSPORT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

struct vgpu_conn;
struct vgpu_ssl_api;

/* Whether this build has TLS at all (OpenSSL headers found at build time). */
bool vgpu_tls_built(void);

/* Daemon: use these (linked) OpenSSL entry points instead of loading libssl. */
void vgpu_tls_use_linked(const struct vgpu_ssl_api *api);

/* Daemon: load the certificate chain and key (and, with client_ca, require and verify
 * client certificates). 0, or -1 with a message in err. */
int vgpu_tls_server_init(const char *cert_file, const char *key_file, const char *client_ca_file, char *err,
                         size_t errlen);
bool vgpu_tls_server_enabled(void);

/* Daemon: run the TLS handshake on an accepted connection within timeout_ms.
 * 0: c now speaks TLS. -1: failed, why in err; *quiet set when the peer merely
 * connected and closed (a liveness probe). 1: the peer spoke plain vgpu instead
 * (its first bytes are unread): the caller may answer it in plain text and close. */
int vgpu_tls_accept(struct vgpu_conn *c, int timeout_ms, bool *quiet, char *err, size_t errlen);

/* Daemon without TLS: whether the peer's first bytes (within timeout_ms) are a TLS
 * handshake, i.e. a guest with VGPU_TLS_CA (refused with a clear log line). */
bool vgpu_tls_client_hello_next(struct vgpu_conn *c, int timeout_ms);

/* Guest: whether VGPU_TLS_CA asks for TLS; the handshake for a new TCP connection
 * to host (a name or an IP literal, checked against the certificate). */
bool vgpu_tls_client_wanted(void);
int vgpu_tls_connect(struct vgpu_conn *c, const char *host, int timeout_ms, char *err, size_t errlen);

/* Daemon: the descriptor to hand to a worker for c: c->fd for a plain connection;
 * for a TLS one, the far end of a socket pair whose near end vgpu_tls_relay serves
 * (c keeps both until then). -1 on failure (errno). */
int vgpu_tls_handoff_fd(struct vgpu_conn *c);
/* Daemon: if vgpu_tls_handoff_fd made a pair, close this process's copy of the far end
 * and relay between the TLS session and the near end until either side closes;
 * returns at once otherwise. Bounded buffers: a side that does not read stalls only
 * its own connection. */
void vgpu_tls_relay(struct vgpu_conn *c);

/* The transport hooks (socket.c, tcp.c): one read of at most n bytes (-1 with errno,
 * 0 at orderly end of stream as for recv_some), a whole vector, and teardown. */
ssize_t vgpu_tls_recv_some(struct vgpu_conn *c, void *p, size_t n);
int vgpu_tls_writev_all(struct vgpu_conn *c, struct iovec *iov, int iovcnt);
void vgpu_tls_free(struct vgpu_conn *c);

#endif
