/* plan.c — how a caller's byte range becomes virtio-blk requests.
 *
 * Pure arithmetic, no I/O, so it is unit tested on its own: the
 * outward-aligned range a read or write touches, the partial edge blocks a
 * write must read first (read-modify-write), and the chunking of each
 * operation by the device's limits.
 */
#include "internal.h"

/* x rounded down to a multiple of a, a power of two: a mask, not a
 * division (four of those per request cost more than the rest of
 * planning it). */
static uint64_t
round_down (uint64_t x, uint32_t a)
{
  return x & ~((uint64_t) a - 1);
}

static uint64_t
round_up (uint64_t x, uint32_t a)
{
  return round_down (x + a - 1, a);
}

void
plan_init (struct io_plan *plan, uint64_t start, uint64_t len,
           uint32_t blk_size)
{
  plan->start = start;
  plan->end = start + len;
  plan->astart = round_down (start, blk_size);
  plan->aend = round_up (plan->end, blk_size);
  plan->istart = round_up (start, blk_size);
  plan->iend = round_down (plan->end, blk_size);
  if (len == 0) {
    plan->head_partial = plan->tail_partial = false;
    return;
  }
  plan->head_partial = start != plan->astart
                       || plan->end < plan->astart + blk_size;
  plan->tail_partial = plan->end != plan->aend
                       || start > plan->aend - blk_size;
}

bool
plan_needs_rmw (const struct io_plan *plan)
{
  return plan->head_partial || plan->tail_partial;
}

static uint64_t
min_u64 (uint64_t a, uint64_t b)
{
  return a < b ? a : b;
}

bool
plan_next_rw_chunk (const struct io_plan *plan, const struct plan_limits *lim,
                    uint32_t type, uint64_t *cursor, struct chunk *out)
{
  if (*cursor >= plan->aend)
    return false;
  out->type = type;
  out->offset = *cursor;
  out->len = min_u64 (lim->max_transfer, plan->aend - *cursor);
  *cursor += out->len;
  return true;
}

bool
plan_next_zero_chunk (const struct io_plan *plan,
                      const struct plan_limits *lim, uint64_t *cursor,
                      struct chunk *out)
{
  uint32_t blk = lim->blk_size;
  uint64_t zero_end;

  if (*cursor >= plan->aend)
    return false;
  if ((*cursor == plan->astart && plan->head_partial)
      || (*cursor == plan->aend - blk && plan->tail_partial)) {
    /* A partial edge block: written whole, with the caller's part zeroed
     * and the rest as read beforehand. */
    out->type = VIRTIO_BLK_T_OUT;
    out->offset = *cursor;
    out->len = blk;
    *cursor += blk;
    return true;
  }
  zero_end = plan->tail_partial ? plan->aend - blk : plan->aend;
  out->type = VIRTIO_BLK_T_WRITE_ZEROES;
  out->offset = *cursor;
  out->len = min_u64 (lim->max_write_zeroes_bytes, zero_end - *cursor);
  *cursor += out->len;
  return true;
}

bool
plan_next_discard_chunk (const struct io_plan *plan,
                         const struct plan_limits *lim, uint64_t *cursor,
                         struct chunk *out)
{
  if (*cursor < plan->istart)
    *cursor = plan->istart;
  if (plan->istart >= plan->iend || *cursor >= plan->iend)
    return false;
  out->type = VIRTIO_BLK_T_DISCARD;
  out->offset = *cursor;
  out->len = min_u64 (lim->max_discard_bytes, plan->iend - *cursor);
  *cursor += out->len;
  return true;
}
