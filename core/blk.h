/* blk.h — virtio-blk: the device config (blk_config.c) and how a byte
 * range becomes virtio-blk requests within the device's limits
 * (plan.c).  Included by internal.h.
 */
#ifndef VUBLK_BLK_H
#define VUBLK_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include <linux/virtio_blk.h>

/* blk_config.c -------------------------------------------------------- */

/* virtio feature bits */


#define VIRTIO_BLK_CONFIG_SIZE 60u

/* The device's config, bounded and in host units. */
struct blk_config {
  uint64_t capacity;        /* 512-byte sectors */
  uint32_t blk_size;        /* bytes, power of two in [512, 64 KiB] */
  uint32_t physical_block_size;
  uint32_t alignment_offset;
  uint32_t min_io_size;
  uint32_t opt_io_size;
  uint32_t size_max;
  uint32_t seg_max;
  uint32_t max_discard_sectors;
  uint32_t max_discard_seg;
  uint32_t discard_sector_alignment;
  uint32_t max_write_zeroes_sectors;
  uint32_t max_write_zeroes_seg;
  bool write_zeroes_may_unmap;
  bool writeback;
  uint16_t num_queues;
};

/* Parses the config bytes (len of them) honouring only fields whose
 * feature bit is in features; rejects absurd values (blk_size not a power
 * of two, capacity overflowing bytes).  Returns 0 or -EPROTO. */
int blk_config_parse (struct blk_config *cfg, const uint8_t *data,
                      uint32_t len, uint64_t features);

/* plan.c -------------------------------------------------------------- */


/* Limits a request plan obeys. */
struct plan_limits {
  uint32_t blk_size;              /* bytes */
  uint32_t max_transfer;          /* bytes per read/write chunk */
  uint64_t max_discard_bytes;     /* per discard chunk */
  uint64_t max_write_zeroes_bytes;
};

/* The geometry of one caller request over [start, end). */
struct io_plan {
  uint64_t start, end;        /* caller's bytes */
  uint64_t astart, aend;      /* outward-aligned range */
  uint64_t istart, iend;      /* inward-aligned range (istart >= iend: none) */
  bool head_partial;          /* block at astart is partly outside */
  bool tail_partial;          /* block at aend - blk is partly outside */
};

/* Computes the aligned ranges of [start, start+len) for blk_size, a
 * power of two (blk_config.c rejects any other). */
void plan_init (struct io_plan *plan, uint64_t start, uint64_t len,
                uint32_t blk_size);

/* True if a write of this plan needs read-modify-write of edge blocks. */
bool plan_needs_rmw (const struct io_plan *plan);

/* One virtio-blk request to issue. */
struct chunk {
  uint32_t type;          /* VIRTIO_BLK_T_* */
  uint64_t offset;        /* bytes, blk aligned */
  uint32_t len;           /* bytes */
};

/* Next chunk of a read or write over the outward-aligned range starting
 * at *cursor (init to plan->astart); returns false when done. */
bool plan_next_rw_chunk (const struct io_plan *plan,
                         const struct plan_limits *lim, uint32_t type,
                         uint64_t *cursor, struct chunk *out);

/* Next chunk of a write-zeroes: edges as WRITE (of one block each, data
 * merged by the caller), the aligned inside as WRITE_ZEROES chunks. */
bool plan_next_zero_chunk (const struct io_plan *plan,
                           const struct plan_limits *lim, uint64_t *cursor,
                           struct chunk *out);

/* Next chunk of a discard: only the inward-aligned range, split by the
 * discard limit (discard is advisory, partial blocks are left alone). */
bool plan_next_discard_chunk (const struct io_plan *plan,
                              const struct plan_limits *lim, uint64_t *cursor,
                              struct chunk *out);

#endif /* VUBLK_BLK_H */
