/* device.c — a device's life: open (handshake, shared memory and queues,
 * threads), close (drain, leave packed rings where the next client
 * expects them, stop the rings), and the per-request limits derived from
 * the config.  control.c keeps it connected in between.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static uint32_t
round_down_u32 (uint64_t x, uint32_t a)
{
  x -= x % a;
  return x > UINT32_MAX ? UINT32_MAX - (UINT32_MAX % a) : x;
}

/* Derives the per-request limits from the config. */
static int
compute_limits (struct vublk *dev)
{
  const struct blk_config *c = &dev->cfg;
  struct plan_limits *l = &dev->limits;
  uint64_t cap = 1ull << 30;

  l->blk_size = c->blk_size;
  l->max_transfer = MAX_TRANSFER_DEFAULT;
  if (c->size_max) {
    /* We give each request one data descriptor, so a segment limit is a
     * request limit. */
    if (c->size_max < c->blk_size)
      return set_error (EPROTO, "%s: size_max %u is below the block size %u",
                        dev->socket_path, c->size_max, c->blk_size);
    if (c->size_max < l->max_transfer)
      l->max_transfer = round_down_u32 (c->size_max, c->blk_size);
  }
  if (l->max_transfer > dev->opts.pool_size / 4)
    l->max_transfer = round_down_u32 (dev->opts.pool_size / 4, c->blk_size);
  l->max_discard_bytes = c->max_discard_sectors
                         ? (uint64_t) c->max_discard_sectors * SECTOR_SIZE : cap;
  l->max_write_zeroes_bytes = c->max_write_zeroes_sectors
                              ? (uint64_t) c->max_write_zeroes_sectors
                                * SECTOR_SIZE : cap;
  if (l->max_discard_bytes > cap)
    l->max_discard_bytes = cap;
  if (l->max_write_zeroes_bytes > cap)
    l->max_write_zeroes_bytes = cap;
  l->max_discard_bytes = round_down_u32 (l->max_discard_bytes, c->blk_size);
  l->max_write_zeroes_bytes = round_down_u32 (l->max_write_zeroes_bytes,
                                              c->blk_size);
  if (!l->max_discard_bytes)
    l->max_discard_bytes = c->blk_size;
  if (!l->max_write_zeroes_bytes)
    l->max_write_zeroes_bytes = c->blk_size;
  return 0;
}

static size_t
page_align (size_t x)
{
  return (x + 4095) & ~(size_t) 4095;
}

/* Lays out rings and control blocks of every queue, then the pool, in one
 * memfd, and initialises the queues over it. */
static int
create_memory_and_queues (struct vublk *dev)
{
  size_t ring = page_align (queue_ring_bytes (dev->queue_size));
  size_t ctl = page_align (queue_ctl_bytes (dev->queue_size));
  size_t per_queue = ring + ctl, pool_off = per_queue * dev->nqueues;
  int err;

  err = shared_memory_create (&dev->mem, pool_off + dev->opts.pool_size,
                              pool_off, dev->opts.pool_size,
                              dev->opts.memory == VUBLK_MEMORY_HUGETLB);
  if (err)
    return err;
  if (dev->mem.fallback_reason[0])
    device_log (dev, VUBLK_LOG_WARNING, "no huge pages for %zu bytes of "
                "shared memory (%s); using ordinary pages (SPDK's NVMe and "
                "RDMA backends need huge pages: reserve them in "
                "/proc/sys/vm/nr_hugepages)", pool_off + dev->opts.pool_size,
                dev->mem.fallback_reason);
  dev->queues = calloc (dev->nqueues, sizeof *dev->queues);
  if (!dev->queues)
    return set_error (ENOMEM, "allocating queues");
  /* A queue_init that fails leaves the later queues uninitialised, and
   * device_free destroys them all: their fds must read "none", not 0. */
  for (unsigned i = 0; i < dev->nqueues; i++)
    queue_mark_unopened (&dev->queues[i]);
  for (unsigned i = 0; i < dev->nqueues; i++) {
    uint8_t *base = dev->mem.base + i * per_queue;
    err = queue_init (&dev->queues[i], dev, i, base,
                      (struct slot_ctl *) (base + ring), dev->queue_size);
    if (err)
      return err;
  }
  return 0;
}

static void
device_free (struct vublk *dev)
{
  if (!dev)
    return;
  for (unsigned i = 0; dev->queues && i < dev->nqueues; i++)
    queue_stop_thread (&dev->queues[i]);
  for (unsigned i = 0; dev->queues && i < dev->nqueues; i++)
    queue_destroy (&dev->queues[i]);
  free (dev->queues);
  if (dev->sock >= 0)
    close (dev->sock);
  if (dev->backend_fd >= 0)
    close (dev->backend_fd);
  if (dev->ctl_wake_fd >= 0)
    close (dev->ctl_wake_fd);
  if (dev->close_fd >= 0)
    close (dev->close_fd);
  if (dev->harvest_fd >= 0)
    close (dev->harvest_fd);
  shared_memory_destroy (&dev->mem);
  pthread_mutex_destroy (&dev->range_lock);
  pthread_mutex_destroy (&dev->harvest_lock);
  pthread_mutex_destroy (&dev->idle_lock);
  pthread_mutex_destroy (&dev->info_lock);
  pthread_cond_destroy (&dev->idle_cond);
  pthread_mutex_destroy (&dev->claim_lock);
  free (dev->harvest);
  free (dev->socket_path);
  free (dev);
}

struct vublk *
vublk_open (const char *socket_path, const struct vublk_options *opts)
{
  struct vublk *dev;
  unsigned usable;
  int err;

  if (!socket_path || !*socket_path) {
    set_error (EINVAL, "no socket path given");
    return NULL;
  }
  dev = calloc (1, sizeof *dev);
  if (!dev) {
    set_error (ENOMEM, "allocating device");
    return NULL;
  }
  static _Atomic uint64_t next_serial = 1;

  atomic_store (&dev->refs, 1);
  dev->serial = atomic_fetch_add (&next_serial, 1);
  dev->sock = dev->backend_fd = dev->ctl_wake_fd = dev->harvest_fd = -1;
  dev->close_fd = -1;
  dev->mem.fd = -1;
  pthread_mutex_init (&dev->range_lock, NULL);
  pthread_mutex_init (&dev->harvest_lock, NULL);
  pthread_mutex_init (&dev->idle_lock, NULL);
  pthread_mutex_init (&dev->info_lock, NULL);
  pthread_cond_init (&dev->idle_cond, NULL);
  pthread_mutex_init (&dev->claim_lock, NULL);
  if (options_import (&dev->opts, opts))
    goto error;
  if (!dev->opts.queue_size)
    dev->opts.queue_size = DEFAULT_QUEUE_SIZE;
  if (!dev->opts.pool_size)
    dev->opts.pool_size = DEFAULT_POOL_SIZE;
  dev->socket_path = strdup (socket_path);
  if (!dev->socket_path || options_check (&dev->opts))
    goto error;
  dev->opts.pool_size = page_align (dev->opts.pool_size);
  dev->ctl_wake_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  dev->harvest_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  dev->close_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (dev->ctl_wake_fd == -1 || dev->harvest_fd == -1 || dev->close_fd == -1) {
    set_error_errno (errno, "eventfd");
    goto error;
  }

  if (handshake_features_and_memory (dev, true))
    goto error;
  dev->readonly = dev->opts.readonly
                  || device_has (dev, VIRTIO_BLK_F_RO);
  usable = dev->backend_queues;
  if (dev->opts.num_queues > usable) {
    set_error (EINVAL, "%s: %u queues requested, the backend offers %u",
               socket_path, dev->opts.num_queues, usable);
    goto error;
  }
  dev->nqueues = dev->opts.num_queues ? dev->opts.num_queues
                 : usable < 4 ? usable : 4;
  dev->queue_size = dev->opts.queue_size;
  if (compute_limits (dev) || create_memory_and_queues (dev)
      || handshake_share_memory (dev) || handshake_rings (dev))
    goto error;

  atomic_store (&dev->state, DEV_CONNECTED);
  for (unsigned i = 0; i < dev->nqueues; i++)
    if (queue_start_thread (&dev->queues[i]))
      goto error;
  err = library_thread_start (&dev->ctl_thread, control_thread, dev);
  if (err) {
    set_error_errno (err, "starting control thread");
    goto error;
  }
  dev->ctl_started = true;
  return dev;

 error:
  {
    /* Keep the first error across cleanup. */
    char msg[512];
    int e = vublk_get_errno ();
    /* Every message names the socket, once. */
    if (strstr (vublk_get_error (), socket_path))
      snprintf (msg, sizeof msg, "%s", vublk_get_error ());
    else
      snprintf (msg, sizeof msg, "%s: %s", socket_path, vublk_get_error ());
    device_free (dev);
    set_error (e ? e : EIO, "%s", msg);
  }
  return NULL;
}

static void
count_completion (void *opaque, int result)
{
  (void) result;
  atomic_fetch_add ((atomic_uint *) opaque, 1);
}

/* DPDK's vhost_blk example keeps a packed ring's wrap counter from one
 * client to the next (it does not take it from SET_VRING_BASE), so the
 * next client is served only if this one leaves the ring in the lap rings
 * start in.  Harmless GET_ID requests move it on until it is; at most one
 * lap of them, for at most a second.  Idle device, closing thread only.
 * A request still in flight when the second is up completes later, into
 * *done and the returned buffer: the caller frees that buffer (if not
 * NULL) once the device is idle, and keeps done alive until then. */
static void *
rewind_packed_rings (struct vublk *dev, atomic_uint *done)
{
  uint64_t deadline = now_ns () + 1000000000ull;
  unsigned submitted = 0;
  void *buf;

  if (!device_has (dev, VIRTIO_F_RING_PACKED)
      || atomic_load (&dev->state) != DEV_CONNECTED
      || !(buf = pool_alloc (&dev->mem.pool, VIRTIO_BLK_ID_BYTES)))
    return NULL;
  for (unsigned i = 0; i < dev->nqueues; i++) {
    struct vublk_queue *q = &dev->queues[i];

    /* A driven queue's completions need its owner: left as it is. */
    if (atomic_load (&q->driven))
      continue;
    for (unsigned n = 0; n < q->ring.num && ring_lap_moved (&q->ring); n++) {
      struct vublk_io io = {
        .op = VUBLK_OP_GET_ID, .buf = buf, .len = VIRTIO_BLK_ID_BYTES,
        .cb = count_completion, .opaque = done,
      };

      if (aio_submit_to (dev, q, &io) != 0)
        break;
      submitted++;
      while (atomic_load (done) < submitted && now_ns () < deadline)
        usleep (50);
      if (atomic_load (done) < submitted)
        return buf;  /* the caller waits for it */
    }
  }
  return buf;
}

void
vublk_close (struct vublk *dev)
{
  atomic_uint rewind_done = 0;   /* outlives every rewinding request */
  void *id_buf;

  if (!dev)
    return;
  /* What this thread left plugged on dev is announced first (close waits
   * for it), and no plug of this thread keeps pointing at dev after it
   * is freed. */
  vublk_aio_unplug (dev);
  driven_release_own (dev);
  pthread_mutex_lock (&dev->idle_lock);
  while (atomic_load (&dev->outstanding) > 0)
    pthread_cond_wait (&dev->idle_cond, &dev->idle_lock);
  pthread_mutex_unlock (&dev->idle_lock);
  id_buf = rewind_packed_rings (dev, &rewind_done);
  pthread_mutex_lock (&dev->idle_lock);
  while (atomic_load (&dev->outstanding) > 0)
    pthread_cond_wait (&dev->idle_cond, &dev->idle_lock);
  pthread_mutex_unlock (&dev->idle_lock);
  if (id_buf)
    pool_free (&dev->mem.pool, id_buf);

  if (dev->ctl_started) {
    atomic_store (&dev->state, DEV_CLOSING);
    eventfd_signal (dev->close_fd);
    eventfd_signal (dev->ctl_wake_fd);
    pthread_join (dev->ctl_thread, NULL);
  }
  handshake_stop_rings (dev);
  /* The threads and the socket go now; the memory when the last driven
   * queue handle lets go of it (device_unref). */
  for (unsigned i = 0; i < dev->nqueues; i++)
    queue_stop_thread (&dev->queues[i]);
  if (dev->sock >= 0) {
    close (dev->sock);
    dev->sock = -1;
  }
  atomic_store (&dev->state, DEV_CLOSED);
  /* Threads still driving a queue may sleep on its call eventfd: wake
   * them to find the device closed. */
  for (unsigned i = 0; i < dev->nqueues; i++)
    if (atomic_load (&dev->queues[i].driven))
      eventfd_signal (dev->queues[i].call_fd);
  device_unref (dev);
}

void
device_ref (struct vublk *dev)
{
  atomic_fetch_add (&dev->refs, 1);
}

void
device_unref (struct vublk *dev)
{
  if (atomic_fetch_sub (&dev->refs, 1) == 1)
    device_free (dev);
}

bool
device_is_gone (const struct vublk *dev)
{
  return atomic_load (&dev->state) == DEV_CLOSED;
}
