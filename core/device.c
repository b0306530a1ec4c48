/* device.c — a device's birth and memory: open (handshake, shared memory
 * and queues, threads), the per-request limits derived from the config,
 * and the references that keep it until the last driven queue handle
 * lets go.  control.c keeps it connected in between; close.c closes it.
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
