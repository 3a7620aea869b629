/*
 * vgpud's OpenSSL: the daemon links libssl/libcrypto (the guest libraries load them
 * at run time instead, see src/transport/tls.c) and hands their entry points to the
 * TLS code here.
 */
#include "server/tls_linked.h"

#include "transport/tls.h"

#if VGPU_HAVE_OPENSSL
#include "transport/tls_api.h"

#define VGPU_SSL_LINKED(fn) .fn = fn,
static const struct vgpu_ssl_api linked = {VGPU_SSL_FUNCTIONS(VGPU_SSL_LINKED, VGPU_SSL_LINKED)};
#undef VGPU_SSL_LINKED

int server_tls_init(const char *cert, const char *key, const char *client_ca, char *err, size_t errlen)
{
    vgpu_tls_use_linked(&linked);
    return vgpu_tls_server_init(cert, key, client_ca, err, errlen);
}

#else

int server_tls_init(const char *cert, const char *key, const char *client_ca, char *err, size_t errlen)
{
    return vgpu_tls_server_init(cert, key, client_ca, err, errlen); /* "built without TLS" */
}

#endif
