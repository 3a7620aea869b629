/*
 * Host functions (hostfn.c): what the graph family needs to turn a guest host function
 * into a ticket the daemon can put in a graph, and back.
 */
#ifndef VGPU_GUEST_HOSTFN_H
#define VGPU_GUEST_HOSTFN_H

#include "guest/cuda/guest.h"

/* Start (once) and wait for the thread that runs host functions. */
CUresult vg_hostfn_runner_ready(void);
/* A ticket for fn(user_data) that stays valid until vg_hostfn_release. */
CUresult vg_hostfn_ticket(CUhostFn fn, void *user_data, uint64_t *ticket);
void vg_hostfn_release(uint64_t ticket);
/* The function behind a live ticket; false if unknown. */
bool vg_hostfn_lookup(uint64_t ticket, CUhostFn *fn, void **user_data);

#endif
