/* ring.h — the one interface queue.c uses over both virtqueue layouts
 * (ring.c, over split_ring.h and packed_ring.h).  Included by internal.h.
 */
#ifndef VUBLK_RING_H
#define VUBLK_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "packed_ring.h"
#include "split_ring.h"

/* A virtqueue of either layout, addressed by slot. */
struct vq_ring {
  bool packed;
  bool indirect;             /* split with INDIRECT_DESC */
  bool event_idx;            /* split with EVENT_IDX */
  unsigned num;
  void *mem;                 /* ring_bytes(num) of shared memory */
  struct split_ring s;
  struct packed_ring p;
};

/* Shared memory a ring of num entries needs, whatever its layout. */
size_t ring_bytes (unsigned num);

/* Lays out a fresh ring over mem.  Indirect descriptors and EVENT_IDX
 * apply to split rings only. */
void ring_init (struct vq_ring *r, void *mem, unsigned num, bool packed,
                bool indirect, bool event_idx);

/* Zeroes the ring and its indexes (a replay starts from scratch). */
void ring_reset (struct vq_ring *r);

/* How many requests (slots) can be in flight at once. */
unsigned ring_slots (const struct vq_ring *r);

/* The used id the device wrote for slot (what ring_harvest turned into a
 * slot number: a chain's head descriptor on split rings without indirect
 * descriptors), for messages that quote the device. */
unsigned ring_wire_id (const struct vq_ring *r, unsigned slot);

/* The three addresses for SET_VRING_ADDR (descriptors, driver area =
 * avail, device area = used) and the num of SET_VRING_BASE. */
void ring_addresses (const struct vq_ring *r, uint64_t *desc,
                     uint64_t *driver, uint64_t *device);
uint32_t ring_base (const struct vq_ring *r);

/* Puts slot's chain of n (<= 3) descriptors on the ring, through the
 * slot's indirect table (at indirect_addr as the device sees it) when the
 * ring uses them.  Not published yet for split rings. */
void ring_place (struct vq_ring *r, unsigned slot,
                 const struct vring_desc *chain, unsigned n,
                 struct vring_desc *indirect, uint64_t indirect_addr);

/* Publishes what was placed; true if the device must be kicked. */
bool ring_publish (struct vq_ring *r);

/* Publishes without asking (after a replay the caller kicks anyway). */
void ring_publish_silently (struct vq_ring *r);

/* Takes up to max used entries, ids translated to slot indexes (not yet
 * checked against the slots in flight).  Sets *violation, with the error
 * recorded, when the ring itself is broken (runaway index, an id that is
 * no chain head); the entries returned before it are good. */
int ring_harvest (struct vq_ring *r, struct vring_used_elem *out,
                  unsigned max, bool *violation);

/* True if a packed ring is in another lap than rings start in. */
bool ring_lap_moved (const struct vq_ring *r);

/* How far the device's used entries had been seen when the ring was last
 * read (a chain placed now is answered after them: split_ring_seen,
 * packed_ring_seen), and whether the entry harvest returned last came
 * before stamp, such a mark (then it cannot answer the chain placed at
 * stamp). */
uint64_t ring_seen (const struct vq_ring *r);
bool ring_published_before (const struct vq_ring *r, uint64_t stamp);

bool ring_has_used (const struct vq_ring *r);

/* Asks the CPU to fetch the memory where the device writes its next used
 * entry, for a thread that polls ring_has_used: a split ring keeps the
 * entry apart from the index it polls, and reading it after the index
 * moved cost a whole cache miss on the way to the next request.  A hint
 * only: it reads nothing and is valid at any time. */
void ring_prefetch_used (const struct vq_ring *r);
bool ring_arm (struct vq_ring *r);
void ring_disarm (struct vq_ring *r);

#endif /* VUBLK_RING_H */
