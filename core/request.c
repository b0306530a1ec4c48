/* request.c — a caller's request on its way through the device: turning
 * each phase into chunks (one virtio-blk request each) with data in
 * shared memory, the write range lock that keeps overlapping
 * read-modify-writes from tearing, and delivering the result.
 *
 * Data placement: a caller buffer that lies in the shared pool and maps
 * block-aligned is used in place (zero copy); anything else is bounced
 * through a pool block per chunk, so a request of any size needs at most
 * max_transfer bytes of pool at a time.
 *
 * Unaligned writes (and write-zeroes) first read their partial edge
 * blocks (PHASE_READ_EDGES), then write whole blocks merged from the edges
 * and the caller's bytes.  Every modifying request holds its
 * outward-aligned block range exclusively from submission to completion,
 * so two writes that share a block are applied one after the other.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static bool
ranges_overlap (const struct request *a, const struct request *b)
{
  return a->lock_start < b->lock_end && b->lock_start < a->lock_end;
}

/* Is req free to run: no active range overlaps it, nor any earlier
 * waiter (FIFO among overlapping writers). */
static bool
range_free_locked (struct vublk *dev, struct request *req,
                   struct request *waiters_before)
{
  for (struct request *r = dev->range_active; r; r = r->range_next)
    if (ranges_overlap (r, req))
      return false;
  for (struct request *r = dev->range_waiting; r && r != waiters_before;
       r = r->range_next)
    if (ranges_overlap (r, req))
      return false;
  return true;
}

bool
range_lock_acquire (struct vublk *dev, struct request *req)
{
  bool granted;
  struct request **tail;

  pthread_mutex_lock (&dev->range_lock);
  granted = range_free_locked (dev, req, NULL);
  if (granted) {
    req->range_next = dev->range_active;
    dev->range_active = req;
  }
  else {
    req->range_next = NULL;
    for (tail = &dev->range_waiting; *tail; tail = &(*tail)->range_next)
      ;
    *tail = req;
  }
  pthread_mutex_unlock (&dev->range_lock);
  return granted;
}

struct request *
range_lock_release (struct vublk *dev, struct request *req)
{
  struct request **p, *granted = NULL;

  pthread_mutex_lock (&dev->range_lock);
  for (p = &dev->range_active; *p; p = &(*p)->range_next)
    if (*p == req) {
      *p = req->range_next;
      break;
    }
  /* Grant waiters that no longer overlap anything, oldest first. */
  p = &dev->range_waiting;
  while (*p) {
    struct request *w = *p;
    if (range_free_locked (dev, w, w)) {
      *p = w->range_next;
      w->range_next = dev->range_active;
      dev->range_active = w;
      w->next = granted;       /* reuse the pending link, list is private */
      granted = w;
    }
    else
      p = &w->range_next;
  }
  pthread_mutex_unlock (&dev->range_lock);
  return granted;
}

/* Whether the caller's buffer can be handed to the device as is. */
static bool
zero_copy (struct vublk *dev, const struct request *req)
{
  return req->plan.start == req->plan.astart && req->plan.end == req->plan.aend
         && pool_contains (&dev->mem.pool, req->io.buf, req->io.len);
}

/* Fills bounce (covering device bytes [off, off+len)) for a write: bytes
 * inside the caller's range from its buffer (or zeroes), bytes outside
 * from the edge blocks read in PHASE_READ_EDGES. */
static void
fill_write_bounce (struct vublk *dev, const struct request *req,
                   uint8_t *bounce, uint64_t off, uint32_t len)
{
  const struct io_plan *pl = &req->plan;
  uint32_t blk = dev->limits.blk_size;
  uint64_t end = off + len;
  uint64_t in_start = off > pl->start ? off : pl->start;
  uint64_t in_end = end < pl->end ? end : pl->end;

  if (off < pl->start)            /* only the head block can start early */
    memcpy (bounce, req->edges + (off - pl->astart), pl->start - off);
  if (in_end > in_start) {
    if (req->io.op == VUBLK_OP_WRITE_ZEROES)
      memset (bounce + (in_start - off), 0, in_end - in_start);
    else
      memcpy (bounce + (in_start - off),
              (const uint8_t *) req->io.buf + (in_start - pl->start),
              in_end - in_start);
  }
  if (end > pl->end) {             /* only the tail block ends late */
    const uint8_t *tail = req->edges + (pl->head_partial
                                        && pl->aend - blk == pl->astart
                                        ? 0 : blk);
    uint64_t tail_block = pl->aend - blk;
    memcpy (bounce + (pl->end - off), tail + (pl->end - tail_block),
            end - pl->end);
  }
}

/* The chunk req's current phase issues next, without consuming it. */
static bool
next_chunk (struct vublk *dev, const struct request *req, uint64_t *cursor,
            struct chunk *c)
{
  const struct io_plan *pl = &req->plan;
  uint32_t blk = dev->limits.blk_size;

  switch (req->phase) {
  case PHASE_READ_EDGES:
    /* cursor 0: head edge, 1: tail edge, 2: done */
    if (*cursor == 0 && pl->head_partial) {
      *c = (struct chunk) { VIRTIO_BLK_T_IN, pl->astart, blk };
      *cursor = 1;
      return true;
    }
    if (*cursor <= 1 && pl->tail_partial
        && !(pl->head_partial && pl->aend - blk == pl->astart)) {
      *c = (struct chunk) { VIRTIO_BLK_T_IN, pl->aend - blk, blk };
      *cursor = 2;
      return true;
    }
    return false;
  case PHASE_MAIN:
    if (*cursor == 0)
      *cursor = pl->astart;
    switch (req->io.op) {
    case VUBLK_OP_READ:
      return plan_next_rw_chunk (pl, &dev->limits, VIRTIO_BLK_T_IN, cursor, c);
    case VUBLK_OP_WRITE:
      return plan_next_rw_chunk (pl, &dev->limits, VIRTIO_BLK_T_OUT, cursor,
                                 c);
    case VUBLK_OP_WRITE_ZEROES:
      return plan_next_zero_chunk (pl, &dev->limits, cursor, c);
    case VUBLK_OP_DISCARD:
      return plan_next_discard_chunk (pl, &dev->limits, cursor, c);
    case VUBLK_OP_FLUSH:
    case VUBLK_OP_GET_ID:
      /* One request, no range. */
      if (*cursor != pl->astart)
        return false;
      *c = (struct chunk) {
        op_desc (req->io.op)->virtio_type, 0,
        req->io.op == VUBLK_OP_GET_ID ? VIRTIO_BLK_ID_BYTES : 0,
      };
      *cursor = UINT64_MAX;
      return true;
    }
    return false;
  case PHASE_FLUSH:
    if (*cursor != 0)
      return false;
    *c = (struct chunk) { VIRTIO_BLK_T_FLUSH, 0, 0 };
    *cursor = 1;
    return true;
  default:
    return false;
  }
}

int
request_fill_slot (struct request *req, struct slot *s)
{
  struct vublk *dev = req->q->dev;
  struct pool *pool = &dev->mem.pool;
  const struct io_plan *pl = &req->plan;
  uint64_t cursor = req->cursor;
  struct chunk c;
  struct slot_ctl *ctl = s->ctl;

  if (req->error || !next_chunk (dev, req, &cursor, &c))
    return 0;

  s->type = c.type;
  s->data = NULL;
  s->data_len = 0;
  s->device_writes = false;
  s->bounce = NULL;
  s->copy_out = NULL;
  ctl->type = c.type;
  ctl->reserved = 0;
  ctl->sector = c.offset / SECTOR_SIZE;

  switch (c.type) {
  case VIRTIO_BLK_T_IN:
    s->device_writes = true;
    s->data_len = c.len;
    if (req->phase == PHASE_READ_EDGES) {
      if (!req->edges) {
        req->edges = pool_alloc (pool, 2 * dev->limits.blk_size);
        if (!req->edges)
          return -ENOMEM;
      }
      s->data = req->edges + (c.offset == pl->astart && pl->head_partial
                              ? 0 : dev->limits.blk_size);
    }
    else if (zero_copy (dev, req))
      s->data = (uint8_t *) req->io.buf + (c.offset - pl->start);
    else {
      uint64_t from = c.offset > pl->start ? c.offset : pl->start;
      uint64_t to = c.offset + c.len < pl->end ? c.offset + c.len : pl->end;

      s->bounce = s->data = pool_alloc (pool, c.len);
      if (!s->bounce)
        return -ENOMEM;
      s->copy_out = (uint8_t *) req->io.buf + (from - pl->start);
      s->copy_out_skip = from - c.offset;
      s->copy_out_len = to - from;
    }
    break;
  case VIRTIO_BLK_T_OUT:
    s->data_len = c.len;
    if (req->io.op == VUBLK_OP_WRITE && zero_copy (dev, req))
      s->data = (uint8_t *) req->io.buf + (c.offset - pl->start);
    else {
      s->bounce = s->data = pool_alloc (pool, c.len);
      if (!s->bounce)
        return -ENOMEM;
      fill_write_bounce (dev, req, s->data, c.offset, c.len);
    }
    break;
  case VIRTIO_BLK_T_DISCARD:
  case VIRTIO_BLK_T_WRITE_ZEROES:
    ctl->sector = 0;
    ctl->seg_sector = c.offset / SECTOR_SIZE;
    ctl->seg_num_sectors = c.len / SECTOR_SIZE;
    ctl->seg_flags = c.type == VIRTIO_BLK_T_WRITE_ZEROES
                     && (req->io.flags & VUBLK_F_UNMAP)
                     ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0;
    break;
  case VIRTIO_BLK_T_FLUSH:
    ctl->sector = 0;
    break;
  case VIRTIO_BLK_T_GET_ID:
    ctl->sector = 0;
    s->device_writes = true;
    s->data_len = VIRTIO_BLK_ID_BYTES;
    s->bounce = s->data = pool_alloc (pool, VIRTIO_BLK_ID_BYTES);
    if (!s->bounce)
      return -ENOMEM;
    /* The device writes a NUL-ended string and may leave the rest. */
    memset (s->data, 0, VIRTIO_BLK_ID_BYTES);
    s->copy_out = req->io.buf;
    s->copy_out_skip = 0;
    s->copy_out_len = req->io.len - 1 < VIRTIO_BLK_ID_BYTES
                      ? req->io.len - 1 : VIRTIO_BLK_ID_BYTES;
    break;
  }
  req->cursor = cursor;
  return 1;
}

/* Requests a driving thread keeps for reuse: allocation and release
 * both happen on it (its callbacks run there), so the list needs no
 * lock, and calloc/free were an eighth of a request's instructions. */
#define REQUEST_CACHE_MAX 64u

/* A zeroed request for q: from the cache when the calling thread drives
 * q, else from the heap.  NULL if memory is short. */
static struct request *
request_alloc (struct vublk_queue *q)
{
  struct request *req;

  /* Only the owner may even look at the cache. */
  if (!thread_drives (q) || !(req = q->request_cache))
    return calloc (1, sizeof *req);
  q->request_cache = req->next;
  q->request_cache_len--;
  memset (req, 0, sizeof *req);
  return req;
}

/* Gives req back: to its queue's cache when the calling thread drives
 * that queue and the cache has room, else to the heap. */
static void
request_free (struct request *req)
{
  struct vublk_queue *q = req->q;

  if (!thread_drives (q) || q->request_cache_len >= REQUEST_CACHE_MAX) {
    free (req);
    return;
  }
  req->next = q->request_cache;
  q->request_cache = req;
  q->request_cache_len++;
}

void
request_cache_drop (struct vublk_queue *q)
{
  while (q->request_cache) {
    struct request *next = q->request_cache->next;

    free (q->request_cache);
    q->request_cache = next;
  }
  q->request_cache_len = 0;
}

struct request *
request_finish (struct request *req)
{
  struct vublk *dev = req->q->dev;
  struct request *granted = NULL;
  int result = req->error;

  if (result == 0 && req->io.op == VUBLK_OP_GET_ID)
    ((char *) req->io.buf)[req->io.len - 1 < VIRTIO_BLK_ID_BYTES
                           ? req->io.len - 1 : VIRTIO_BLK_ID_BYTES] = '\0';
  pool_free (&dev->mem.pool, req->edges);
  req->edges = NULL;
  if (req->write_range)
    granted = range_lock_release (dev, req);

  if (req->io.cb)
    req->io.cb (req->io.opaque, result);
  else {
    /* Room was reserved at submission (aio.c): this cannot fail. */
    pthread_mutex_lock (&dev->harvest_lock);
    dev->harvest_reserved--;
    dev->harvest[dev->harvest_len++] = (struct vublk_completion) {
      .user_data = req->io.user_data, .result = result,
    };
    eventfd_signal (dev->harvest_fd);
    pthread_mutex_unlock (&dev->harvest_lock);
  }
  request_free (req);
  if (atomic_fetch_sub (&dev->outstanding, 1) == 1) {
    pthread_mutex_lock (&dev->idle_lock);
    pthread_cond_broadcast (&dev->idle_cond);
    pthread_mutex_unlock (&dev->idle_lock);
  }
  return granted;
}

bool
request_phase_end (struct request *req)
{
  bool fua = req->io.op == VUBLK_OP_WRITE && (req->io.flags & VUBLK_F_FUA)
             && device_has (req->q->dev, VIRTIO_BLK_F_FLUSH);

  if (req->error)
    return true;
  switch (req->phase) {
  case PHASE_READ_EDGES:
    req->phase = PHASE_MAIN;
    break;
  case PHASE_MAIN:
    if (!fua)
      return true;
    req->phase = PHASE_FLUSH;
    break;
  default:
    return true;
  }
  req->cursor = 0;
  req->generated_all = false;
  return false;
}

struct request *
request_new (struct vublk *dev, struct vublk_queue *q,
             const struct vublk_io *io)
{
  struct request *req = request_alloc (q);

  if (!req) {
    set_error (ENOMEM, "allocating a request");
    return NULL;
  }
  req->io = *io;
  req->q = q;
  plan_init (&req->plan, io->offset, io->len, dev->limits.blk_size);
  req->phase = PHASE_MAIN;
  if ((io->op == VUBLK_OP_WRITE || io->op == VUBLK_OP_WRITE_ZEROES)
      && plan_needs_rmw (&req->plan))
    req->phase = PHASE_READ_EDGES;
  /* Every change of data holds its block range (no tearing). */
  if (op_desc (io->op)->modifies) {
    req->write_range = true;
    req->lock_start = req->plan.astart;
    req->lock_end = req->plan.aend;
  }
  return req;
}
