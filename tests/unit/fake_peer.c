/* fake_peer.c — the in-process device of fake_peer.h.  The device side
 * of the rings is written from the VIRTIO 1.2 layouts (2.7 split, 2.8
 * packed), not from the core's code, and checks every chain it takes:
 * header first (16 bytes, device-readable), status last (1 byte,
 * device-writable), at most one data or segment descriptor between.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <cmocka.h>

#include "fake_peer.h"


unsigned fake_done_counter;

uint8_t
fake_pattern (uint64_t off)
{
  return (uint8_t) (off * 7 + off / 512 * 13 + 1);
}

static size_t
page_align (size_t x)
{
  return (x + 4095) & ~(size_t) 4095;
}

struct vublk *
fake_device_new (const struct fake_params *p)
{
  struct vublk *dev = calloc (1, sizeof *dev);
  size_t ring = page_align (queue_ring_bytes (p->queue_size));
  size_t ctl = page_align (queue_ctl_bytes (p->queue_size));

  assert_non_null (dev);
  dev->sock = dev->backend_fd = dev->close_fd = -1;
  pthread_mutex_init (&dev->range_lock, NULL);
  pthread_mutex_init (&dev->harvest_lock, NULL);
  pthread_mutex_init (&dev->idle_lock, NULL);
  pthread_mutex_init (&dev->info_lock, NULL);
  pthread_cond_init (&dev->idle_cond, NULL);
  dev->socket_path = strdup ("fake");
  vublk_options_init (&dev->opts);
  dev->opts.pool_size = p->pool_size;
  dev->ctl_wake_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  dev->harvest_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  assert_true (dev->ctl_wake_fd >= 0 && dev->harvest_fd >= 0);

  dev->features = 1ull << VIRTIO_F_VERSION_1
                  | 1ull << VIRTIO_BLK_F_WRITE_ZEROES
                  | 1ull << VIRTIO_BLK_F_DISCARD;
  if (p->flush)
    dev->features |= 1ull << VIRTIO_BLK_F_FLUSH;
  if (p->layout == LAYOUT_SPLIT_INDIRECT)
    dev->features |= 1ull << VIRTIO_RING_F_INDIRECT_DESC;
  if (p->layout == LAYOUT_PACKED)
    dev->features |= 1ull << VIRTIO_F_RING_PACKED;
  dev->backend_features = dev->features;
  dev->cfg.capacity = p->disk_bytes / SECTOR_SIZE;
  dev->cfg.blk_size = p->blk_size;
  dev->limits = (struct plan_limits) {
    .blk_size = p->blk_size, .max_transfer = p->max_transfer,
    .max_discard_bytes = 4 * p->max_transfer,
    .max_write_zeroes_bytes = 4 * p->max_transfer,
  };
  atomic_store (&dev->size, p->disk_bytes);
  dev->nqueues = 1;
  dev->queue_size = p->queue_size;
  dev->backend_queues = 1;

  assert_int_equal (shared_memory_create (&dev->mem, ring + ctl + p->pool_size,
                                          ring + ctl, p->pool_size, false), 0);
  dev->queues = calloc (1, sizeof *dev->queues);
  assert_non_null (dev->queues);
  assert_int_equal (queue_init (&dev->queues[0], dev, 0, dev->mem.base,
                                (struct slot_ctl *) (dev->mem.base + ring),
                                p->queue_size), 0);
  atomic_store (&dev->state, DEV_CONNECTED);
  /* The test's reference: a queue handle takes and drops its own. */
  atomic_store (&dev->refs, 1);
  return dev;
}

void
fake_device_free (struct vublk *dev)
{
  queue_stop_thread (&dev->queues[0]);
  queue_destroy (&dev->queues[0]);
  free (dev->queues);
  shared_memory_destroy (&dev->mem);
  close (dev->ctl_wake_fd);
  close (dev->harvest_fd);
  pthread_mutex_destroy (&dev->range_lock);
  pthread_mutex_destroy (&dev->harvest_lock);
  pthread_mutex_destroy (&dev->idle_lock);
  pthread_mutex_destroy (&dev->info_lock);
  pthread_cond_destroy (&dev->idle_cond);
  free (dev->harvest);
  free (dev->socket_path);
  free (dev);
}

struct fake_peer *
fake_peer_new (struct vublk *dev)
{
  struct fake_peer *peer = calloc (1, sizeof *peer);
  uint64_t bytes = atomic_load (&dev->size);

  assert_non_null (peer);
  peer->q = &dev->queues[0];
  peer->disk_bytes = bytes;
  peer->disk = malloc (bytes);
  assert_non_null (peer->disk);
  for (uint64_t i = 0; i < bytes; i++)
    peer->disk[i] = fake_pattern (i);
  fake_peer_reset (peer);
  return peer;
}

void
fake_peer_free (struct fake_peer *peer)
{
  free (peer->disk);
  free (peer);
}

void
fake_peer_reset (struct fake_peer *peer)
{
  peer->last_avail = peer->used_idx = 0;
  peer->avail_pos = peer->used_pos = 0;
  /* Lap 0 first: the core announces base 0 (PACKED_START_WRAP). */
  peer->avail_wrap = peer->used_wrap = PACKED_START_WRAP;
  peer->ntaken = 0;
}

/* Checks a chain's shape and records it as taken. */
static void
record_chain (struct fake_peer *peer, uint16_t id, unsigned ndesc,
              const struct vring_desc *d, unsigned n)
{
  struct fake_chain *c;

  assert_true (n == 2 || n == 3);
  assert_int_equal (d[0].len, 16);
  assert_false (d[0].flags & VRING_DESC_F_WRITE);
  assert_int_equal (d[n - 1].len, 1);
  assert_true (d[n - 1].flags & VRING_DESC_F_WRITE);
  assert_true (peer->ntaken < FAKE_MAX_TAKEN);
  c = &peer->taken[peer->ntaken++];
  memset (c, 0, sizeof *c);
  c->id = id;
  c->ndesc = ndesc;
  c->type = *(const uint32_t *) (uintptr_t) d[0].addr;
  c->sector = *(const uint64_t *) (uintptr_t) (d[0].addr + 8);
  if (n == 3)
    c->data = d[1];
  c->status = (uint8_t *) (uintptr_t) d[n - 1].addr;
}

/* Walks a split chain starting at head (through an indirect table if
 * the head is one) into d; returns its length. */
static unsigned
walk_split (const struct split_ring *s, uint16_t head, struct vring_desc *d)
{
  const struct vring_desc *table = s->desc;
  unsigned i = head, n = 0, limit = s->num;

  if (s->desc[head].flags & VRING_DESC_F_INDIRECT) {
    table = (const struct vring_desc *) (uintptr_t) s->desc[head].addr;
    limit = s->desc[head].len / sizeof (struct vring_desc);
    assert_true (limit >= 2 && limit <= 4);
    i = 0;
  }
  for (;;) {
    assert_true (i < limit && n < 4);
    d[n++] = table[i];
    if (!(table[i].flags & VRING_DESC_F_NEXT))
      return n;
    i = table[i].next;
  }
}

static unsigned
take_split (struct fake_peer *peer)
{
  const struct split_ring *s = &peer->q->ring.s;
  uint16_t idx = __atomic_load_n (&s->avail[1], __ATOMIC_ACQUIRE);
  unsigned got = 0;

  assert_true ((uint16_t) (idx - peer->last_avail) <= s->num);
  while (peer->last_avail != idx) {
    struct vring_desc d[4];
    uint16_t head = s->avail[2 + (peer->last_avail & (s->num - 1))];
    unsigned n;

    assert_true (head < s->num);
    n = walk_split (s, head, d);
    record_chain (peer, head, n, d, n);
    peer->last_avail++;
    got++;
  }
  return got;
}

static unsigned
take_packed (struct fake_peer *peer)
{
  const struct packed_ring *p = &peer->q->ring.p;
  unsigned got = 0;

  for (;;) {
    struct vring_desc d[4];
    unsigned n = 0;
    uint16_t flags = __atomic_load_n (&p->desc[peer->avail_pos].flags,
                                      __ATOMIC_ACQUIRE);
    uint16_t id = 0;

    if (!!(flags & PACKED_DESC_F_AVAIL) != peer->avail_wrap
        || !!(flags & PACKED_DESC_F_USED) == peer->avail_wrap)
      return got;
    do {
      const struct packed_desc *pd = &p->desc[peer->avail_pos];

      flags = __atomic_load_n (&pd->flags, __ATOMIC_ACQUIRE);
      assert_true (n < 4);
      assert_true (!!(flags & PACKED_DESC_F_AVAIL) == peer->avail_wrap);
      d[n++] = (struct vring_desc) {
        .addr = pd->addr, .len = pd->len,
        .flags = flags & (VRING_DESC_F_NEXT | VRING_DESC_F_WRITE),
      };
      id = pd->id;          /* the buffer id is in the chain's last one */
      if (++peer->avail_pos == p->num) {
        peer->avail_pos = 0;
        peer->avail_wrap = !peer->avail_wrap;
      }
    } while (flags & VRING_DESC_F_NEXT);
    record_chain (peer, id, n, d, n);
    got++;
  }
}

unsigned
fake_peer_take (struct fake_peer *peer)
{
  return peer->q->ring.packed ? take_packed (peer) : take_split (peer);
}

/* Does chain c's I/O; returns the bytes written into the chain. */
static uint32_t
serve (struct fake_peer *peer, const struct fake_chain *c)
{
  uint64_t off = c->sector * SECTOR_SIZE;
  uint8_t *data = (uint8_t *) (uintptr_t) c->data.addr;
  const struct virtio_blk_discard_write_zeroes *seg = (const void *) data;
  struct fake_served *log = &peer->log[peer->nserved++ % FAKE_MAX_LOG];
  uint32_t written = 0, len = c->data.len;
  uint8_t status = VIRTIO_BLK_S_OK;

  switch (c->type) {
  case VIRTIO_BLK_T_IN:
  case VIRTIO_BLK_T_OUT:
    assert_true (len > 0);
    assert_int_equal (!!(c->data.flags & VRING_DESC_F_WRITE),
                      c->type == VIRTIO_BLK_T_IN);
    if (off > peer->disk_bytes || len > peer->disk_bytes - off)
      status = VIRTIO_BLK_S_IOERR;
    else if (c->type == VIRTIO_BLK_T_IN) {
      memcpy (data, peer->disk + off, len);
      written = len;
    }
    else
      memcpy (peer->disk + off, data, len);
    break;
  case VIRTIO_BLK_T_WRITE_ZEROES:
  case VIRTIO_BLK_T_DISCARD:
    assert_int_equal (len, sizeof *seg);
    assert_int_equal (c->sector, 0);
    off = seg->sector * SECTOR_SIZE;
    len = seg->num_sectors * SECTOR_SIZE;
    assert_true (off <= peer->disk_bytes && len <= peer->disk_bytes - off);
    memset (peer->disk + off, 0, len);
    break;
  case VIRTIO_BLK_T_FLUSH:
    assert_int_equal (len, 0);
    peer->flushes++;
    break;
  case VIRTIO_BLK_T_GET_ID:
    assert_int_equal (len, VIRTIO_BLK_ID_BYTES);
    memcpy (data, "fake-peer", 9);
    written = 9;
    break;
  default:
    status = VIRTIO_BLK_S_UNSUPP;
  }
  *log = (struct fake_served) { c->type, off, len };
  *c->status = status;
  return 1 + written;
}

/* Writes a used entry at the device's position. */
static void
put_used (struct fake_peer *peer, uint16_t id, uint32_t len, unsigned step)
{
  struct vublk_queue *q = peer->q;

  if (q->ring.packed) {
    struct packed_desc *pd = &q->ring.p.desc[peer->used_pos];

    pd->id = id;
    pd->len = len;
    __atomic_store_n (&pd->flags, peer->used_wrap
                                  ? PACKED_DESC_F_AVAIL | PACKED_DESC_F_USED
                                  : 0,
                      __ATOMIC_RELEASE);
    peer->used_pos += step;
    if (peer->used_pos >= q->ring.p.num) {
      peer->used_pos -= q->ring.p.num;
      peer->used_wrap = !peer->used_wrap;
    }
    return;
  }
  struct vring_used_elem *e =
    (struct vring_used_elem *) (q->ring.s.used + 4)
    + (peer->used_idx & (q->ring.s.num - 1));
  e->id = id;
  e->len = len;
  peer->used_idx++;
}

void
fake_peer_complete (struct fake_peer *peer, unsigned i)
{
  struct fake_chain c;

  assert_true (i < peer->ntaken);
  c = peer->taken[i];
  memmove (&peer->taken[i], &peer->taken[i + 1],
           (peer->ntaken - i - 1) * sizeof c);
  peer->ntaken--;
  put_used (peer, c.id, serve (peer, &c), c.ndesc);
}

void
fake_peer_publish (struct fake_peer *peer)
{
  struct vublk_queue *q = peer->q;

  if (!q->ring.packed)
    __atomic_store_n ((uint16_t *) (q->ring.s.used + 2), peer->used_idx,
                      __ATOMIC_RELEASE);
}

void
fake_peer_push_raw_used (struct fake_peer *peer, uint16_t id, uint32_t len,
                         unsigned step)
{
  put_used (peer, id, len, step);
}

unsigned
fake_peer_run (struct fake_peer *peer)
{
  unsigned served = 0;

  for (unsigned rounds = 0; ; rounds++) {
    unsigned took = fake_peer_take (peer), done = 0;

    assert_true (rounds < 1000000);
    while (peer->ntaken > 0) {
      fake_peer_complete (peer, 0);
      done++;
    }
    fake_peer_publish (peer);
    served += done;
    if (queue_process (peer->q, PROCESS_BUDGET) == 0 && took == 0 && done == 0)
      return served;
  }
}

void
fake_done_cb (void *opaque, int result)
{
  struct fake_done *d = opaque;

  d->calls++;
  d->result = result;
  d->order = ++fake_done_counter;
}

struct fake_env
fake_env_new (const struct fake_params *p)
{
  struct fake_env e;

  e.dev = fake_device_new (p);
  e.q = &e.dev->queues[0];
  e.peer = fake_peer_new (e.dev);
  return e;
}

void
fake_env_free (struct fake_env *e)
{
  assert_int_equal (atomic_load (&e->dev->outstanding), 0);
  assert_int_equal (e->q->inflight, 0);
  assert_null (e->q->pending_head);
  assert_int_equal (e->dev->mem.pool.used_pages, 0);
  fake_peer_free (e->peer);
  fake_device_free (e->dev);
}

void
fake_submit (struct fake_env *e, enum vublk_op op, uint32_t flags,
             uint64_t off, void *buf, size_t len, struct fake_done *done)
{
  struct vublk_io io = {
    .op = op, .flags = flags, .offset = off, .buf = buf, .len = len,
    .cb = fake_done_cb, .opaque = done,
  };
  assert_int_equal (aio_submit_to (e->dev, e->q, &io), 0);
}

uint64_t
fake_kicks (struct vublk_queue *q)
{
  uint64_t n = 0;

  if (read (q->kick_fd, &n, sizeof n) != sizeof n)
    return 0;
  return n;
}
