/* Names of wire operations, for logs. */
#include "common/proto.h"

const char *vgpu_op_name(unsigned op)
{
    switch (op) {
#define VGPU_OP_NAME(name, id) \
    case id: return #name;
        VGPU_OPS(VGPU_OP_NAME)
#undef VGPU_OP_NAME
    default: return "?";
    }
}
