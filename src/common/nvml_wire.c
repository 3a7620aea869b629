/* Encoding and decoding of the NVML_INIT facts (see nvml_wire.h). */
#include "common/nvml_wire.h"

#include <string.h>

static void put_str(struct wire_buf *b, const struct vg_nvml_str *f)
{
    wire_put_i32(b, f->rc);
    if (f->rc == 0) wire_put_str(b, f->s);
}

static void put_u32(struct wire_buf *b, const struct vg_nvml_u32 *f)
{
    wire_put_i32(b, f->rc);
    if (f->rc == 0) wire_put_u32(b, f->v);
}

static void put_pair(struct wire_buf *b, const struct vg_nvml_pair *f)
{
    wire_put_i32(b, f->rc);
    if (f->rc == 0) {
        wire_put_u32(b, f->a);
        wire_put_u32(b, f->b);
    }
}

static void get_str(struct wire_rd *r, struct vg_nvml_str *f)
{
    memset(f, 0, sizeof *f);
    f->rc = wire_get_i32(r);
    /* A NULL string is not a fact: malformed. */
    if (f->rc == 0 && !wire_get_str(r, f->s, sizeof f->s)) r->bad = true;
}

static void get_u32(struct wire_rd *r, struct vg_nvml_u32 *f)
{
    f->rc = wire_get_i32(r);
    f->v = f->rc == 0 ? wire_get_u32(r) : 0;
}

static void get_pair(struct wire_rd *r, struct vg_nvml_pair *f)
{
    f->rc = wire_get_i32(r);
    f->a = f->b = 0;
    if (f->rc == 0) {
        f->a = wire_get_u32(r);
        f->b = wire_get_u32(r);
    }
}

void vg_nvml_put_system(struct wire_buf *b, const struct vg_nvml_system *s)
{
    put_str(b, &s->driver_version);
    put_str(b, &s->nvml_version);
    put_u32(b, &s->cuda_version);
    put_u32(b, &s->cuda_version_v2);
    wire_put_u32(b, s->count);
}

void vg_nvml_get_system(struct wire_rd *r, struct vg_nvml_system *s)
{
    get_str(r, &s->driver_version);
    get_str(r, &s->nvml_version);
    get_u32(r, &s->cuda_version);
    get_u32(r, &s->cuda_version_v2);
    s->count = wire_get_u32(r);
    if (s->count > VG_NVML_MAX_DEVICES) r->bad = true;
}

void vg_nvml_put_device(struct wire_buf *b, const struct vg_nvml_device *d)
{
    put_str(b, &d->name);
    put_str(b, &d->uuid);
    put_str(b, &d->serial);
    put_str(b, &d->part_number);
    put_u32(b, &d->minor);
    put_u32(b, &d->brand);
    put_u32(b, &d->arch);
    wire_put_i32(b, d->pci.rc);
    if (d->pci.rc == 0) {
        wire_put_str(b, d->pci.bus_id);
        wire_put_u32(b, d->pci.domain);
        wire_put_u32(b, d->pci.bus);
        wire_put_u32(b, d->pci.device);
        wire_put_u32(b, d->pci.device_id);
        wire_put_u32(b, d->pci.subsystem_id);
    }
    put_u32(b, &d->max_link_gen);
    put_u32(b, &d->gpu_max_link_gen);
    put_u32(b, &d->max_link_width);
    put_pair(b, &d->cc);
    put_pair(b, &d->mig);
    put_pair(b, &d->ecc);
    put_pair(b, &d->power_limits);
    put_u32(b, &d->power_default_limit);
    for (int i = 0; i < VG_NVML_THRESHOLDS; i++) put_u32(b, &d->temp_threshold[i]);
    for (int i = 0; i < VG_NVML_CLOCKS; i++) put_u32(b, &d->max_clock[i]);
    put_u32(b, &d->num_fans);
}

void vg_nvml_get_device(struct wire_rd *r, struct vg_nvml_device *d)
{
    get_str(r, &d->name);
    get_str(r, &d->uuid);
    get_str(r, &d->serial);
    get_str(r, &d->part_number);
    get_u32(r, &d->minor);
    get_u32(r, &d->brand);
    get_u32(r, &d->arch);
    memset(&d->pci, 0, sizeof d->pci);
    d->pci.rc = wire_get_i32(r);
    if (d->pci.rc == 0) {
        if (!wire_get_str(r, d->pci.bus_id, sizeof d->pci.bus_id)) r->bad = true;
        d->pci.domain = wire_get_u32(r);
        d->pci.bus = wire_get_u32(r);
        d->pci.device = wire_get_u32(r);
        d->pci.device_id = wire_get_u32(r);
        d->pci.subsystem_id = wire_get_u32(r);
    }
    get_u32(r, &d->max_link_gen);
    get_u32(r, &d->gpu_max_link_gen);
    get_u32(r, &d->max_link_width);
    get_pair(r, &d->cc);
    get_pair(r, &d->mig);
    get_pair(r, &d->ecc);
    get_pair(r, &d->power_limits);
    get_u32(r, &d->power_default_limit);
    for (int i = 0; i < VG_NVML_THRESHOLDS; i++) get_u32(r, &d->temp_threshold[i]);
    for (int i = 0; i < VG_NVML_CLOCKS; i++) get_u32(r, &d->max_clock[i]);
    get_u32(r, &d->num_fans);
}
