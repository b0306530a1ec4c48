/* ops.c — one table of the operations a caller can ask for, with every
 * property the rest of the core reads: the name in messages, whether it
 * changes data (refused on a read-only device, holds a range lock),
 * whether it takes a buffer and a byte range, the feature bit it needs
 * and the virtio-blk request type it becomes.  Adding an operation
 * (secure erase, lifetime) starts with a row here.
 */
#include <stddef.h>

#include "internal.h"

static const struct op_desc ops[] = {
  [VUBLK_OP_READ] = {
    .name = "read", .ranged = true, .needs_buffer = true,
    .feature = -1, .virtio_type = VIRTIO_BLK_T_IN, .device_writes = true,
  },
  [VUBLK_OP_WRITE] = {
    .name = "write", .modifies = true, .ranged = true, .needs_buffer = true,
    .feature = -1, .virtio_type = VIRTIO_BLK_T_OUT,
  },
  [VUBLK_OP_FLUSH] = {
    .name = "flush", .feature = VIRTIO_BLK_F_FLUSH,
    .virtio_type = VIRTIO_BLK_T_FLUSH, .no_op_without_feature = true,
  },
  [VUBLK_OP_DISCARD] = {
    .name = "discard", .modifies = true, .ranged = true,
    .feature = VIRTIO_BLK_F_DISCARD, .virtio_type = VIRTIO_BLK_T_DISCARD,
  },
  [VUBLK_OP_WRITE_ZEROES] = {
    .name = "write-zeroes", .modifies = true, .ranged = true,
    .feature = VIRTIO_BLK_F_WRITE_ZEROES,
    .virtio_type = VIRTIO_BLK_T_WRITE_ZEROES,
  },
  [VUBLK_OP_GET_ID] = {
    .name = "get-id", .needs_buffer = true, .feature = -1,
    .virtio_type = VIRTIO_BLK_T_GET_ID, .device_writes = true,
  },
};

const struct op_desc *
op_desc (enum vublk_op op)
{
  return (unsigned) op < sizeof ops / sizeof ops[0] && ops[op].name
         ? &ops[op] : NULL;
}

const char *
op_name (enum vublk_op op)
{
  const struct op_desc *d = op_desc (op);

  return d ? d->name : "unknown operation";
}
