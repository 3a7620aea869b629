/* The guest configuration file (/etc/vgpu/client.conf, or $VGPU_CLIENT_CONF): server
 * address, token, timeout and TLS files for the guest libraries, so that a guest
 * installed with `make install` needs no environment. Environment variables win. */
#ifndef VGPU_CLIENT_CONF_H
#define VGPU_CLIENT_CONF_H

#define VGPU_CLIENT_CONF_DEFAULT "/etc/vgpu/client.conf"

/* Read $VGPU_CLIENT_CONF (else VGPU_CLIENT_CONF_DEFAULT) once per process; later calls
 * do nothing. A missing file is fine; a malformed line is logged (file:line) and
 * skipped. Never fails, never prints to stdout. */
void vgpu_client_conf_load(void);

/* Parse PATH now, replacing what was loaded (tests). Returns the number of lines
 * warned about, or -1 when the file cannot be read (missing: not logged). */
int vgpu_client_conf_parse(const char *path);

/* The setting named by its environment variable (VGPU_SERVER, VGPU_TOKEN,
 * VGPU_TOKEN_FILE, VGPU_TIMEOUT, VGPU_TLS_CA, VGPU_TLS_CERT, VGPU_TLS_KEY): the
 * variable when set and not empty, else the file's value, else NULL. Settings that go
 * together (token and token file; TLS certificate and key) come all from the
 * environment when any of them is set there, so the two sources never mix. Before
 * vgpu_client_conf_load (the daemon never calls it) this is getenv. */
const char *vgpu_client_setting(const char *env_name);

#endif
