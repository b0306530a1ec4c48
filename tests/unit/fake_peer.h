/* fake_peer.h — an in-process vhost-user-blk device for unit tests of the
 * queue and request logic: a hand-built struct vublk (shared memory, one
 * queue, no socket, no completion thread) and a peer that plays the
 * device over that queue's ring memory, split (indirect or the fixed
 * 3i triple) or packed, serving reads and writes against a disk buffer.
 *
 * The peer takes chains off the ring and completes them separately, so a
 * test decides what is in flight, in which order chains complete, and
 * what goes wrong (a duplicate id, a runaway index, ...).
 */
#ifndef FAKE_PEER_H
#define FAKE_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* Ring layouts a test runs over. */
enum fake_layout {
  LAYOUT_SPLIT_INDIRECT,
  LAYOUT_SPLIT_TRIPLE,      /* split without INDIRECT_DESC: chains 3i.. */
  LAYOUT_PACKED,
};

/* What a device is built with. */
struct fake_params {
  enum fake_layout layout;
  unsigned queue_size;      /* ring entries (power of two) */
  uint32_t blk_size;
  uint32_t max_transfer;
  uint64_t disk_bytes;
  size_t pool_size;         /* multiple of 4096 */
  bool flush;               /* VIRTIO_BLK_F_FLUSH negotiated */
};

/* One chain the peer took off the ring. */
struct fake_chain {
  uint16_t id;              /* split: head descriptor; packed: buffer id */
  unsigned ndesc;           /* descriptors in the ring (packed step) */
  uint32_t type;
  uint64_t sector;
  struct vring_desc data;   /* data or segment descriptor (len 0: none) */
  uint8_t *status;
};

/* One request the peer served, in completion order. */
struct fake_served {
  uint32_t type;
  uint64_t offset;          /* bytes */
  uint32_t len;             /* bytes */
};

#define FAKE_MAX_TAKEN 1024
#define FAKE_MAX_LOG 4096

struct fake_peer {
  struct vublk_queue *q;
  uint8_t *disk;
  uint64_t disk_bytes;
  /* split ring, the device's side */
  uint16_t last_avail, used_idx;
  /* packed ring, the device's side */
  uint16_t avail_pos, used_pos;
  bool avail_wrap, used_wrap;
  /* taken, not yet completed */
  struct fake_chain taken[FAKE_MAX_TAKEN];
  unsigned ntaken;
  /* served, in order (wraps at FAKE_MAX_LOG; nserved counts them all) */
  struct fake_served log[FAKE_MAX_LOG];
  unsigned long nserved;
  unsigned flushes;
};

/* Builds a connected device with one queue as p describes and a disk of
 * p->disk_bytes filled with fake_pattern.  Aborts the test on failure. */
struct vublk *fake_device_new (const struct fake_params *p);

/* Releases what fake_device_new made (no request may be outstanding). */
void fake_device_free (struct vublk *dev);

/* The byte the fresh disk holds at offset off. */
uint8_t fake_pattern (uint64_t off);

/* Starts a peer on dev's queue 0 with its own disk (p->disk_bytes). */
struct fake_peer *fake_peer_new (struct vublk *dev);
void fake_peer_free (struct fake_peer *peer);

/* Back to the start of a fresh ring, as a backend after a reconnect
 * (what was taken and not completed is forgotten). */
void fake_peer_reset (struct fake_peer *peer);

/* Takes every chain made available since the last call onto the taken
 * list (appended in ring order).  Returns how many. */
unsigned fake_peer_take (struct fake_peer *peer);

/* Serves taken chain i (removing it from the list, order kept): does the
 * I/O against the disk, writes the status and puts the used entry on
 * the ring.  Not published to the driver until fake_peer_publish. */
void fake_peer_complete (struct fake_peer *peer, unsigned i);

/* Makes the used entries written so far visible (split: used idx). */
void fake_peer_publish (struct fake_peer *peer);

/* Writes a raw used entry (id, len) at the device's used position and
 * advances it by step descriptors (packed), without any chain: for
 * protocol violations. */
void fake_peer_push_raw_used (struct fake_peer *peer, uint16_t id,
                              uint32_t len, unsigned step);

/* Takes, serves everything and harvests (queue_process) until neither
 * side has anything left to do.  Returns the chains served. */
unsigned fake_peer_run (struct fake_peer *peer);

/* A completion callback's record: how often it ran and its last result. */
struct fake_done {
  unsigned calls;
  int result;
  unsigned order;           /* completion number (1-based) of the last call */
};

/* How many kicks q sent since the last look (its kick eventfd). */
uint64_t fake_kicks (struct vublk_queue *q);

/* The callback for vublk_io.cb with opaque = a struct fake_done. */
void fake_done_cb (void *opaque, int result);

/* Completion count across all fake_done records (for order checks). */
extern unsigned fake_done_counter;

/* A device, its queue and a peer on it. */
struct fake_env {
  struct vublk *dev;
  struct vublk_queue *q;
  struct fake_peer *peer;
};

struct fake_env fake_env_new (const struct fake_params *p);

/* Checks nothing is left (no request, slot, pending entry or pool page)
 * and frees the environment. */
void fake_env_free (struct fake_env *e);

/* Submits one request on e's queue with fake_done_cb(done); asserts it
 * is accepted. */
void fake_submit (struct fake_env *e, enum vublk_op op, uint32_t flags,
                  uint64_t off, void *buf, size_t len,
                  struct fake_done *done);

#endif /* FAKE_PEER_H */
