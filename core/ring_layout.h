/* ring_layout.h — what the two virtqueue layouts (split_ring.c,
 * packed_ring.c) and ring.c share about laying rings out in memory.
 */
#ifndef VUBLK_RING_LAYOUT_H
#define VUBLK_RING_LAYOUT_H

#include <stddef.h>

/* Each ring area starts on its own cache line, so the producer's and the
 * consumer's writes do not share one. */
#define AREA_ALIGN 64u

/* x rounded up to a multiple of a (a power of two). */
static inline size_t
ring_align_up (size_t x, size_t a)
{
  return (x + a - 1) & ~(a - 1);
}

#endif /* VUBLK_RING_LAYOUT_H */
