/* packed_ring.c — packed virtqueue arithmetic (VIRTIO 1.2, 2.8): placing
 * descriptor chains with the avail/used wrap bits, publishing a chain by
 * writing its head's flags last, harvesting used descriptors, and the
 * flag-based notification suppression in both directions.
 *
 * Layout: descriptors 16*N (align 16), then the driver event suppression
 * area {le16 off_wrap, le16 flags} (the device reads it: whether to send
 * us interrupts), then the device's area (we read it: whether to kick).
 * EVENT_IDX is not negotiated together with packed rings, so only the
 * ENABLE/DISABLE flags are used.
 *
 * A chain of n descriptors occupies n consecutive ring positions from
 * next_avail (wrapping flips the avail wrap counter, also in mid chain).
 * The device writes one used descriptor per chain, at its own used
 * position, and both sides then step over as many positions as the chain
 * had: the driver learns that count from the buffer id, so it records the
 * length of every chain it placed (ndesc[id]); a used id with no chain
 * recorded is a protocol violation.
 *
 * Both sides start in the lap whose wrap counter is 0, announced as such
 * in SET_VRING_BASE (bit 15 clear).  The usual start is 1, but DPDK's
 * vhost_blk example reads the base back with the wrap bit still in it and
 * indexes its ring with 0x8000, so it works only from lap 0; every backend
 * that honours the announced wrap bit (rte_vhost, SPDK) works either way.
 * In lap 0 a zeroed descriptor looks used (AVAIL == USED == 0), so the
 * ring is read only while chains are outstanding.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

#define PACKED_EVENT_FLAG_ENABLE 0
#define PACKED_EVENT_FLAG_DISABLE 1

size_t
packed_ring_size (unsigned num, size_t *driver_off, size_t *device_off)
{
  size_t driver = ring_align_up (16u * num, AREA_ALIGN);
  size_t device = driver + AREA_ALIGN;

  if (driver_off)
    *driver_off = driver;
  if (device_off)
    *device_off = device;
  return device + AREA_ALIGN;
}

void
packed_ring_init (struct packed_ring *ring, void *mem, unsigned num)
{
  size_t driver_off, device_off, size;

  size = packed_ring_size (num, &driver_off, &device_off);
  memset (mem, 0, size);
  ring->num = num;
  ring->desc = mem;
  ring->driver_event = (uint16_t *) ((uint8_t *) mem + driver_off);
  ring->device_event = (uint16_t *) ((uint8_t *) mem + device_off);
  ring->next_avail = 0;
  ring->avail_wrap = PACKED_START_WRAP;
  ring->next_used = 0;
  ring->used_wrap = PACKED_START_WRAP;
  ring->placed = 0;
  __atomic_store_n (&ring->outstanding, 0, __ATOMIC_RELAXED);
  memset (ring->ndesc, 0, sizeof ring->ndesc);
  ring->placed_pos = ring->used_pos = ring->last_pos = ring->seen_pos = 0;
}

/* The AVAIL/USED flag bits that make a descriptor available in the
 * current lap (wrap): AVAIL = wrap, USED = !wrap. */
static uint16_t
avail_bits (bool wrap)
{
  return wrap ? PACKED_DESC_F_AVAIL : PACKED_DESC_F_USED;
}

void
packed_ring_place (struct packed_ring *ring, uint16_t id,
                   const struct vring_desc *chain, unsigned n)
{
  uint16_t head = ring->next_avail, head_flags = 0;
  uint16_t pos = head;
  bool wrap = ring->avail_wrap;

  for (unsigned i = 0; i < n; i++) {
    struct packed_desc *d = &ring->desc[pos];
    uint16_t flags = (chain[i].flags & (VRING_DESC_F_NEXT | VRING_DESC_F_WRITE))
                     | avail_bits (wrap);

    d->addr = chain[i].addr;
    d->len = chain[i].len;
    d->id = id;
    if (i == 0)
      head_flags = flags;
    else
      __atomic_store_n (&d->flags, flags, __ATOMIC_RELAXED);
    if (++pos == ring->num) {
      pos = 0;
      wrap = !wrap;
    }
  }
  ring->ndesc[id] = n;
  __atomic_store_n (&ring->outstanding, ring->outstanding + n,
                    __ATOMIC_RELAXED);
  ring->next_avail = pos;
  ring->avail_wrap = wrap;
  ring->placed_pos += n;
  ring->placed++;
  /* The head's flags make the whole chain visible: written last, after
   * everything else of the chain (release). */
  __atomic_store_n (&ring->desc[head].flags, head_flags, __ATOMIC_RELEASE);
}

bool
packed_ring_publish (struct packed_ring *ring)
{
  if (ring->placed == 0)
    return false;
  ring->placed = 0;
  /* Publishing the chains and reading the device's wish must not be
   * reordered (store-load): a full barrier. */
  __atomic_thread_fence (__ATOMIC_SEQ_CST);
  return __atomic_load_n (&ring->device_event[1], __ATOMIC_RELAXED)
         != PACKED_EVENT_FLAG_DISABLE;
}

/* True if the descriptor at next_used has been marked used in the lap we
 * expect.  Any thread (a hint without the lock). */
bool
packed_ring_has_used (const struct packed_ring *ring)
{
  uint16_t pos = __atomic_load_n (&ring->next_used, __ATOMIC_RELAXED);
  bool wrap = __atomic_load_n (&ring->used_wrap, __ATOMIC_RELAXED);
  uint16_t flags;
  bool avail, used;

  if (__atomic_load_n (&ring->outstanding, __ATOMIC_RELAXED) == 0)
    return false;
  flags = __atomic_load_n (&ring->desc[pos].flags, __ATOMIC_ACQUIRE);
  avail = flags & PACKED_DESC_F_AVAIL;
  used = flags & PACKED_DESC_F_USED;
  return avail == used && used == wrap;
}

/* Steps seen_pos over the used descriptors the device has already
 * written past the harvest, as the device placed them (each one's chain
 * length on), within what was placed.  Every position is looked at once
 * (seen_pos only grows), plus the first unused one per call.  A correct
 * device writes a used descriptor once, only after it read the chain, and
 * nothing rewrites a position between next_used and next_avail; so an
 * entry harvest later finds before seen_pos was there before any chain
 * placed after this look, and cannot answer one.  A hostile device can
 * only make seen_pos wrong for entries that are wrong anyway. */
static void
look_ahead (struct packed_ring *ring)
{
  uint64_t at = ring->seen_pos > ring->used_pos ? ring->seen_pos
                                                : ring->used_pos;

  while (at < ring->placed_pos) {
    uint16_t pos = at & (ring->num - 1);
    bool wrap = PACKED_START_WRAP ^ !!(at & ring->num);  /* num: 2^k */
    uint16_t flags = __atomic_load_n (&ring->desc[pos].flags,
                                      __ATOMIC_ACQUIRE);
    uint16_t id;

    if (!!(flags & PACKED_DESC_F_AVAIL) != wrap
        || !!(flags & PACKED_DESC_F_USED) != wrap)
      break;
    id = __atomic_load_n (&ring->desc[pos].id, __ATOMIC_RELAXED);
    if (id >= ring->num || ring->ndesc[id] == 0) {
      /* No chain in flight has it (a correct device never writes one):
       * seen used all the same, harvest reports it unless a refill gave
       * the id out again, which seen_pos then catches. */
      at++;
      break;
    }
    at += ring->ndesc[id];
  }
  ring->seen_pos = at;
}

int
packed_ring_harvest (struct packed_ring *ring, struct vring_used_elem *out,
                     unsigned max, unsigned *good)
{
  unsigned n = 0;

  while (n < max && packed_ring_has_used (ring)) {
    const struct packed_desc *d = &ring->desc[ring->next_used];
    uint16_t id = __atomic_load_n (&d->id, __ATOMIC_RELAXED);
    uint32_t len = __atomic_load_n (&d->len, __ATOMIC_RELAXED);
    unsigned step;

    *good = n;
    if (id >= ring->num || ring->ndesc[id] == 0)
      return set_error (EPROTO, "used buffer id %u at position %u is not in "
                        "flight", id, ring->next_used);
    step = ring->ndesc[id];
    ring->ndesc[id] = 0;
    __atomic_store_n (&ring->outstanding, ring->outstanding - step,
                      __ATOMIC_RELAXED);
    out[n].id = id;
    out[n].len = len;
    n++;
    ring->last_pos = ring->used_pos;
    ring->used_pos += step;
    step += ring->next_used;
    if (step >= ring->num) {
      step -= ring->num;
      __atomic_store_n (&ring->used_wrap, !ring->used_wrap, __ATOMIC_RELAXED);
    }
    __atomic_store_n (&ring->next_used, (uint16_t) step, __ATOMIC_RELAXED);
  }
  look_ahead (ring);
  return n;
}

uint64_t
packed_ring_seen (const struct packed_ring *ring)
{
  return ring->seen_pos;
}

bool
packed_ring_published_before (const struct packed_ring *ring, uint64_t stamp)
{
  return ring->last_pos < stamp;
}

bool
packed_ring_arm (struct packed_ring *ring)
{
  __atomic_store_n (&ring->driver_event[1], PACKED_EVENT_FLAG_ENABLE,
                    __ATOMIC_RELAXED);
  /* Enable, then re-read the ring: a completion that landed in between is
   * otherwise never signalled (the lost wakeup). */
  __atomic_thread_fence (__ATOMIC_SEQ_CST);
  return packed_ring_has_used (ring);
}

void
packed_ring_disarm (struct packed_ring *ring)
{
  /* Stores only on a change: the device reads this line after every
   * completion (see split_ring_disarm). */
  if (__atomic_load_n (&ring->driver_event[1], __ATOMIC_RELAXED)
      != PACKED_EVENT_FLAG_DISABLE)
    __atomic_store_n (&ring->driver_event[1], PACKED_EVENT_FLAG_DISABLE,
                    __ATOMIC_RELAXED);
}
