/* ring.h — the virtqueue layouts (split_ring.c, packed_ring.c) and the
 * one interface queue.c uses over both (ring.c).  Included by internal.h.
 */
#ifndef VUBLK_RING_H
#define VUBLK_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/virtio_ring.h>

/* Each ring area starts on its own cache line, so the producer's and the
 * consumer's writes do not share one. */
#define AREA_ALIGN 64u

/* x rounded up to a multiple of a (a power of two). */
static inline size_t
ring_align_up (size_t x, size_t a)
{
  return (x + a - 1) & ~(a - 1);
}

/* split_ring.c -------------------------------------------------------- */



struct split_ring {
  uint16_t num;              /* entries, a power of two */
  struct vring_desc *desc;
  uint16_t *avail;           /* flags, idx, ring[num], used_event */
  uint8_t *used;             /* flags, idx, ring[num] elems, avail_event */
  uint16_t avail_idx;        /* our next avail index (shadow) */
  uint16_t kicked_idx;       /* avail idx at the last notification */
  uint16_t last_used_idx;    /* next used entry to harvest */
  bool event_idx;
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

/* packed_ring.c ------------------------------------------------------- */

struct packed_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t id;
  uint16_t flags;
};

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

/* Notification control and the lock-free "anything used?" hint, as for
 * split rings. */
bool packed_ring_has_used (const struct packed_ring *ring);
bool packed_ring_arm (struct packed_ring *ring);
void packed_ring_disarm (struct packed_ring *ring);

/* ring.c -------------------------------------------------------------- */

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
