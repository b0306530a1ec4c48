/* ring.c — one interface over the two virtqueue layouts, so that queue.c
 * deals in slots and never in descriptors: where a slot's chain goes
 * (split: a fixed place per slot, indirect or three descriptors; packed:
 * the next free positions), which slot a used entry belongs to, and the
 * ring's reset for a replay after a reconnect.
 *
 * Slot ids: split with INDIRECT_DESC uses descriptor i for slot i; split
 * without it the fixed chain 3i..3i+2; packed rings carry the slot index
 * as buffer id.  Without indirect descriptors a request takes at most
 * three descriptors, so num / 3 slots never overfill either layout.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

size_t
ring_bytes (unsigned num)
{
  size_t split = split_ring_size (num, NULL, NULL);
  size_t packed = packed_ring_size (num, NULL, NULL);

  return split > packed ? split : packed;
}

void
ring_init (struct vq_ring *r, void *mem, unsigned num, bool packed,
           bool indirect, bool event_idx)
{
  r->packed = packed;
  r->indirect = indirect && !packed;
  r->num = num;
  r->mem = mem;
  r->event_idx = event_idx && !packed;
  ring_reset (r);
}

void
ring_reset (struct vq_ring *r)
{
  if (r->packed)
    packed_ring_init (&r->p, r->mem, r->num);
  else
    split_ring_init (&r->s, r->mem, r->num, r->event_idx);
}

unsigned
ring_slots (const struct vq_ring *r)
{
  return r->indirect ? r->num : r->num / 3;
}

unsigned
ring_wire_id (const struct vq_ring *r, unsigned slot)
{
  return r->packed || r->indirect ? slot : slot * 3;
}

void
ring_addresses (const struct vq_ring *r, uint64_t *desc, uint64_t *driver,
                uint64_t *device)
{
  size_t driver_off, device_off;

  if (r->packed)
    packed_ring_size (r->num, &driver_off, &device_off);
  else
    split_ring_size (r->num, &driver_off, &device_off);
  *desc = (uint64_t) (uintptr_t) r->mem;
  *driver = *desc + driver_off;
  *device = *desc + device_off;
}

uint32_t
ring_base (const struct vq_ring *r)
{
  /* A fresh ring starts at index 0; a packed one in the lap of
   * PACKED_START_WRAP (bit 15). */
  return r->packed ? (uint32_t) PACKED_START_WRAP << 15 : 0;
}

/* Stores want at *at unless *at already holds it.  A slot reused for the
 * same buffer (the common case: a caller's fixed buffer, or the same pool
 * block) then leaves the descriptor's cache line shared with the device
 * instead of taking it back: each line taken costs the request about
 * 100 ns before the device can see it.  The device only reads
 * descriptors; one it changed behind us is simply written again. */
static void
desc_store (struct vring_desc *at, const struct vring_desc *want)
{
  if (memcmp (at, want, sizeof *want) != 0)
    *at = *want;
}

void
ring_place (struct vq_ring *r, unsigned slot, const struct vring_desc *chain,
            unsigned n, struct vring_desc *indirect, uint64_t indirect_addr)
{
  if (r->packed) {
    packed_ring_place (&r->p, slot, chain, n);
    return;
  }
  if (r->indirect) {
    for (unsigned i = 0; i < n; i++) {
      struct vring_desc d = chain[i];

      d.next = i + 1;
      desc_store (&indirect[i], &d);
    }
    desc_store (&r->s.desc[slot], &(struct vring_desc) {
      .addr = indirect_addr, .len = n * sizeof (struct vring_desc),
      .flags = VRING_DESC_F_INDIRECT,
    });
    split_ring_push_avail (&r->s, slot);
    return;
  }
  for (unsigned i = 0; i < n; i++) {
    struct vring_desc d = chain[i];

    d.next = 3 * slot + i + 1;
    desc_store (&r->s.desc[3 * slot + i], &d);
  }
  split_ring_push_avail (&r->s, 3 * slot);
}

bool
ring_publish (struct vq_ring *r)
{
  return r->packed ? packed_ring_publish (&r->p) : split_ring_publish (&r->s);
}

void
ring_publish_silently (struct vq_ring *r)
{
  if (r->packed) {
    r->p.placed = 0;
    return;
  }
  __atomic_store_n (&r->s.avail[1], r->s.avail_idx, __ATOMIC_RELEASE);
  r->s.kicked_idx = r->s.avail_idx;
}

int
ring_harvest (struct vq_ring *r, struct vring_used_elem *out, unsigned max,
              bool *violation)
{
  int got;

  *violation = false;
  if (r->packed) {
    /* Stops at a bad id, whose chain length is unknown: what came before
     * it is good. */
    unsigned n = 0;
    got = packed_ring_harvest (&r->p, out, max, &n);
    if (got < 0) {
      *violation = true;
      return n;
    }
    return got;
  }
  got = split_ring_harvest (&r->s, out, max);
  if (got < 0) {
    *violation = true;
    return 0;
  }
  if (r->indirect)
    return got;
  for (int i = 0; i < got; i++) {
    if (out[i].id % 3) {
      set_error (EPROTO, "used id %u is not a chain head", out[i].id);
      *violation = true;
      return i;
    }
    out[i].id /= 3;
  }
  return got;
}

bool
ring_lap_moved (const struct vq_ring *r)
{
  return r->packed && r->p.avail_wrap != PACKED_START_WRAP;
}

uint64_t
ring_seen (const struct vq_ring *r)
{
  return r->packed ? packed_ring_seen (&r->p) : split_ring_seen (&r->s);
}

bool
ring_published_before (const struct vq_ring *r, uint64_t stamp)
{
  return r->packed ? packed_ring_published_before (&r->p, stamp)
                   : split_ring_published_before (&r->s, stamp);
}

bool
ring_has_used (const struct vq_ring *r)
{
  return r->packed ? packed_ring_has_used (&r->p)
                   : split_ring_has_used (&r->s);
}

void
ring_prefetch_used (const struct vq_ring *r)
{
  /* A packed ring's used entry is the descriptor whose flags are polled. */
  if (!r->packed)
    split_ring_prefetch_used (&r->s);
}

bool
ring_arm (struct vq_ring *r)
{
  return r->packed ? packed_ring_arm (&r->p) : split_ring_arm (&r->s);
}

void
ring_disarm (struct vq_ring *r)
{
  if (r->packed)
    packed_ring_disarm (&r->p);
  else
    split_ring_disarm (&r->s);
}
