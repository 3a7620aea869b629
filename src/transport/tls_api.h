/*
 * The OpenSSL functions vgpu's TLS code calls, as a table: the guest libraries fill it
 * with dlsym from libssl.so.3/libcrypto.so.3 (so they carry no NEEDED entry for
 * either), vgpud with the functions it links. Each entry has the type of the function
 * declared by the OpenSSL headers, so a mismatch is a compile error. Only real
 * functions (never OpenSSL's macros) may be listed. Include only where
 * VGPU_HAVE_OPENSSL is set.
 */
#ifndef VGPU_TRANSPORT_TLS_API_H
#define VGPU_TRANSPORT_TLS_API_H

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* X(function): libssl; C(function): libcrypto. */
#define VGPU_SSL_FUNCTIONS(X, C)                                                                               \
    X(TLS_server_method)                                                                                       \
    X(TLS_client_method)                                                                                       \
    X(SSL_CTX_new)                                                                                             \
    X(SSL_CTX_free)                                                                                            \
    X(SSL_CTX_ctrl)                                                                                            \
    X(SSL_CTX_set_options)                                                                                     \
    X(SSL_CTX_use_certificate_chain_file)                                                                      \
    X(SSL_CTX_use_PrivateKey_file)                                                                             \
    X(SSL_CTX_check_private_key)                                                                               \
    X(SSL_CTX_load_verify_locations)                                                                           \
    X(SSL_CTX_set_verify)                                                                                      \
    X(SSL_CTX_set_client_CA_list)                                                                              \
    X(SSL_CTX_set_num_tickets)                                                                                 \
    X(SSL_CTX_set_default_read_buffer_len)                                                                     \
    X(SSL_load_client_CA_file)                                                                                 \
    X(SSL_new)                                                                                                 \
    X(SSL_free)                                                                                                \
    X(SSL_ctrl)                                                                                                \
    X(SSL_set_fd)                                                                                              \
    X(SSL_set1_host)                                                                                           \
    X(SSL_get0_param)                                                                                          \
    X(SSL_accept)                                                                                              \
    X(SSL_connect)                                                                                             \
    X(SSL_read)                                                                                                \
    X(SSL_write)                                                                                               \
    X(SSL_shutdown)                                                                                            \
    X(SSL_get_error)                                                                                           \
    X(SSL_get_verify_result)                                                                                   \
    X(SSL_get_version)                                                                                         \
    X(SSL_get_current_cipher)                                                                                  \
    X(SSL_CIPHER_get_name)                                                                                     \
    X(SSL_get1_peer_certificate)                                                                               \
    C(OPENSSL_init_crypto)                                                                                     \
    C(X509_free)                                                                                               \
    C(X509_get_subject_name)                                                                                   \
    C(X509_NAME_oneline)                                                                                       \
    C(X509_VERIFY_PARAM_set1_ip_asc)                                                                           \
    C(X509_verify_cert_error_string)                                                                           \
    C(ERR_get_error)                                                                                           \
    C(ERR_clear_error)                                                                                         \
    C(ERR_error_string_n)                                                                                      \
    C(ERR_reason_error_string)

#define VGPU_SSL_FIELD(fn) __typeof__(fn) *fn;
struct vgpu_ssl_api {
    VGPU_SSL_FUNCTIONS(VGPU_SSL_FIELD, VGPU_SSL_FIELD)
};
#undef VGPU_SSL_FIELD

#endif
