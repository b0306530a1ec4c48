/* packed_ring.h — the packed virtqueue layout (packed_ring.c). */
#ifndef VUBLK_PACKED_RING_H
#define VUBLK_PACKED_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ring_layout.h"

struct packed_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t id;
  uint16_t flags;
};

/* A descriptor's AVAIL and USED flag bits (virtio 1.1 2.8.1; bit numbers
 * VRING_PACKED_DESC_F_AVAIL and _USED of linux/virtio_ring.h). */
#define PACKED_DESC_F_AVAIL (1u << 7)
#define PACKED_DESC_F_USED (1u << 15)

/* The wrap counter both sides start with (see packed_ring.c). */
#define PACKED_START_WRAP false

struct packed_ring {
  uint16_t num;
  struct packed_desc *desc;
  uint16_t *driver_event;    /* {off_wrap, flags}: the device reads it */
  uint16_t *device_event;    /* {off_wrap, flags}: we read it */
  uint16_t next_avail;       /* where the next chain goes */
  bool avail_wrap;
  uint16_t next_used;        /* where the next used descriptor appears
                                (atomic: read as a hint without the lock) */
  bool used_wrap;
  unsigned placed;           /* chains placed since the last publish */
  unsigned outstanding;      /* descriptors placed and not yet harvested
                                (atomic: read as a hint) */
  uint8_t ndesc[1024];       /* chain length per buffer id in flight */
  /* Ring positions since the ring was laid out, without wrapping: placed,
   * harvested (next_used's), the position of the entry harvest returned
   * last, and how far the device's used descriptors were seen ahead of
   * the harvest (packed_ring_published_before). */
  uint64_t placed_pos, used_pos, last_pos, seen_pos;
};

/* Bytes for a packed ring of num entries; *driver_off and *device_off get
 * the offsets of the two event suppression areas. */
size_t packed_ring_size (unsigned num, size_t *driver_off,
                         size_t *device_off);

/* Lays a zeroed ring of num (<= 1024) entries over mem. */
void packed_ring_init (struct packed_ring *ring, void *mem, unsigned num);

/* Makes the chain of n descriptors available with buffer id id (< num);
 * the head is written last.  The caller guarantees n free positions. */
void packed_ring_place (struct packed_ring *ring, uint16_t id,
                        const struct vring_desc *chain, unsigned n);

/* Reports whether chains were placed since the last call and the device
 * wants notifications. */
bool packed_ring_publish (struct packed_ring *ring);

/* Copies up to max used entries (id, len) into out.  Returns the count,
 * or -EPROTO at a used id with no chain in flight (the *good entries
 * before it are valid and consumed). */
int packed_ring_harvest (struct packed_ring *ring, struct vring_used_elem *out,
                         unsigned max, unsigned *good);

/* Where the device's next unseen used descriptor can be: a chain placed
 * now is answered at or after it. */
uint64_t packed_ring_seen (const struct packed_ring *ring);

/* True if the entry harvest returned last sat before stamp (a
 * packed_ring_seen at placement): it was seen used before that chain
 * existed, so it cannot answer it (the device gave an id twice). */
bool packed_ring_published_before (const struct packed_ring *ring,
                                   uint64_t stamp);

/* Notification control and the lock-free "anything used?" hint, as for
 * split rings. */
bool packed_ring_has_used (const struct packed_ring *ring);
bool packed_ring_arm (struct packed_ring *ring);
void packed_ring_disarm (struct packed_ring *ring);

#endif /* VUBLK_PACKED_RING_H */
