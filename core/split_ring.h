/* split_ring.h — the split virtqueue layout (split_ring.c). */
#ifndef VUBLK_SPLIT_RING_H
#define VUBLK_SPLIT_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/virtio_ring.h>

#include "ring_layout.h"

struct split_ring {
  uint16_t num;              /* entries, a power of two */
  struct vring_desc *desc;
  uint16_t *avail;           /* flags, idx, ring[num], used_event */
  uint8_t *used;             /* flags, idx, ring[num] elems, avail_event */
  uint16_t avail_idx;        /* our next avail index (shadow) */
  uint16_t kicked_idx;       /* avail idx at the last notification */
  uint16_t last_used_idx;    /* next used entry to harvest */
  bool event_idx;
  /* Used entries since the ring was laid out, without wrapping: those
   * harvested, and those the device had published when harvest last
   * read its index (split_ring_published_before). */
  uint64_t harvested, seen;
};

/* Bytes needed for a ring of num entries: desc, avail, used areas, each
 * starting at the offsets written to *avail_off and *used_off. */
size_t split_ring_size (unsigned num, size_t *avail_off, size_t *used_off);

/* Lays a zeroed ring of num entries over mem (split_ring_size bytes). */
void split_ring_init (struct split_ring *ring, void *mem, unsigned num,
                      bool event_idx);

/* Puts head on the avail ring without publishing it. */
void split_ring_push_avail (struct split_ring *ring, uint16_t head);

/* Publishes pushed entries and reports whether the device must be
 * notified (EVENT_IDX or the NO_NOTIFY flag). */
bool split_ring_publish (struct split_ring *ring);


/* Copies up to max used entries into out, advancing last_used_idx.
 * Returns the count, or -EPROTO if the device's used idx claims more
 * entries than the ring holds. */
int split_ring_harvest (struct split_ring *ring, struct vring_used_elem *out,
                        unsigned max);

/* How many used entries the device had published when the ring was
 * last read: an entry placed now can only come back after them. */
uint64_t split_ring_seen (const struct split_ring *ring);

/* True if the entry harvest returned last was published before the
 * ring had seen stamp entries (split_ring_seen at placement): then it
 * cannot answer a chain placed at stamp, and names its slot twice.
 * Exact when harvest returns one entry at a time (completion.c does);
 * after a batch it judges every entry by the last one's position, which
 * can miss a duplicate but never rejects a good entry. */
bool split_ring_published_before (const struct split_ring *ring,
                                  uint64_t stamp);

/* Asks for an interrupt at the next used entry and re-checks the ring
 * after a full barrier.  Returns true if entries are already pending (do
 * not sleep). */
bool split_ring_arm (struct split_ring *ring);

/* Asks the device not to interrupt (while polling). */
void split_ring_disarm (struct split_ring *ring);

/* True if the used ring has entries we have not harvested. */
bool split_ring_has_used (const struct split_ring *ring);

/* ring_prefetch_used for a split ring. */
void split_ring_prefetch_used (const struct split_ring *ring);

#endif /* VUBLK_SPLIT_RING_H */
