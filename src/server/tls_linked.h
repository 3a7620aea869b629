/* vgpud's TLS setup with the OpenSSL it links (tls_linked.c). */
#ifndef VGPU_SERVER_TLS_LINKED_H
#define VGPU_SERVER_TLS_LINKED_H

#include <stddef.h>

/* --tls-cert, --tls-key, --tls-client-ca (NULL: none). 0, or -1 with a message in err. */
int server_tls_init(const char *cert, const char *key, const char *client_ca, char *err, size_t errlen);

#endif
