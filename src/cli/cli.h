/* Shared by the vgpu command's subcommands. */
#ifndef VGPU_CLI_H
#define VGPU_CLI_H

#include <stddef.h>

/* The directory holding vgpu's guest libraries: VGPU_LIB_DIR, else ../lib next to the
 * vgpu executable. 0 on success. */
int cli_lib_dir(char *out, size_t n);

int cmd_smi(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif
