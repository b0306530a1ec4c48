/* device.c — a device's life: open (handshake, shared memory, queues,
 * threads), the control thread, reconnect after a backend restart,
 * config-change notifications, request timeouts, and close.
 *
 * After the handshake only the control thread talks on the socket, so the
 * socket needs no lock.  It sleeps in poll() on the socket (a backend
 * never speaks first on it: readable means closed or broken), the backend
 * channel (config changes) and a wake eventfd, waking every 250 ms to
 * check request deadlines.
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

#define CONTROL_TICK_MS 250
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 1000

uint64_t
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

uint64_t
now_coarse_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t) ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

int
device_reply_timeout_ms (const struct vublk *dev)
{
  int ms = dev->opts.connect_timeout > 0
           ? (int) (dev->opts.connect_timeout * 1000) : 5000;

  if (dev->attempt_deadline_ns) {
    uint64_t now = now_ns (), left;

    left = dev->attempt_deadline_ns > now
           ? (dev->attempt_deadline_ns - now) / 1000000 : 0;
    if (left < 1)
      left = 1;   /* one last look, never a wait without end */
    if (left < (uint64_t) ms)
      ms = (int) left;
  }
  return ms;
}

void
device_wake_control (struct vublk *dev)
{
  uint64_t one = 1;

  if (write (dev->ctl_wake_fd, &one, sizeof one) < 0) {
    /* EAGAIN: the counter is saturated, the thread wakes anyway. */
  }
}

void
vublk_options_init (struct vublk_options *opts)
{
  memset (opts, 0, sizeof *opts);
  opts->queue_size = DEFAULT_QUEUE_SIZE;
  opts->pool_size = DEFAULT_POOL_SIZE;
  opts->connect_timeout = 5;
  opts->request_timeout = 30;
  opts->reconnect_timeout = 30;
  opts->log_level = VUBLK_LOG_INFO;
}

static int
check_options (const struct vublk_options *o)
{
  if (o->queue_size < 8 || o->queue_size > MAX_QUEUE_SIZE
      || (o->queue_size & (o->queue_size - 1)))
    return set_error (EINVAL, "queue size %u is not a power of two between "
                      "8 and %u", o->queue_size, MAX_QUEUE_SIZE);
  if (o->num_queues > MAX_QUEUES)
    return set_error (EINVAL, "%u queues requested, at most %u",
                      o->num_queues, MAX_QUEUES);
  if (o->pool_size < (1u << 20) || o->pool_size > (1ull << 36))
    return set_error (EINVAL, "pool size %zu is outside 1 MiB .. 64 GiB",
                      o->pool_size);
  if (!(o->connect_timeout >= 0 && o->connect_timeout <= 3600)
      || !(o->request_timeout >= 0 && o->request_timeout <= 86400)
      || !(o->reconnect_timeout >= 0 && o->reconnect_timeout <= 86400))
    return set_error (EINVAL, "timeouts must be between 0 and 86400 seconds");
  if (o->ring != VUBLK_RING_AUTO && o->ring != VUBLK_RING_SPLIT
      && o->ring != VUBLK_RING_PACKED)
    return set_error (EINVAL, "ring layout %d is not auto, split or packed",
                      (int) o->ring);
  if (o->memory != VUBLK_MEMORY_NORMAL && o->memory != VUBLK_MEMORY_HUGETLB)
    return set_error (EINVAL, "memory kind %d is neither normal nor hugetlb",
                      (int) o->memory);
  if (o->spin_us > MAX_SPIN_US)
    return set_error (EINVAL, "spin time %u us is above %u", o->spin_us,
                      MAX_SPIN_US);
  return 0;
}

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
  for (unsigned i = 0; i < dev->nqueues; i++) {
    uint8_t *base = dev->mem.base + i * per_queue;
    err = queue_init (&dev->queues[i], dev, i, base,
                      (struct slot_ctl *) (base + ring), dev->queue_size);
    if (err)
      return err;
  }
  return 0;
}

/* Reads one message from the backend channel and acts on it. */
static void
handle_backend_message (struct vublk *dev)
{
  struct vhost_user_header hdr;
  uint8_t payload[VHOST_USER_MAX_PAYLOAD];
  ssize_t r;

  r = recv (dev->backend_fd, &hdr, sizeof hdr, MSG_WAITALL);
  if (r != (ssize_t) sizeof hdr || hdr.size > sizeof payload
      || (hdr.size && recv (dev->backend_fd, payload, hdr.size, MSG_WAITALL)
          != (ssize_t) hdr.size)) {
    /* Closed or garbage: stop listening; the main socket tells us if the
     * backend is gone. */
    close (dev->backend_fd);
    dev->backend_fd = -1;
    return;
  }
  if (hdr.flags & VHOST_USER_NEED_REPLY_MASK) {
    struct {
      struct vhost_user_header h;
      uint64_t v;
    } __attribute__ ((packed)) reply = {
      { hdr.request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, 8 },
      hdr.request == VHOST_USER_BACKEND_CONFIG_CHANGE_MSG ? 0 : 1,
    };
    if (send (dev->backend_fd, &reply, sizeof reply, MSG_NOSIGNAL) < 0) {
      /* the backend is going away; the main socket reports it */
    }
  }
  if (hdr.request == VHOST_USER_BACKEND_CONFIG_CHANGE_MSG)
    handshake_read_config (dev);  /* a failure here shows as a broken socket */
}

/* Sleeps ms, returning early (true) if the device is closing. */
static bool
sleep_or_close (struct vublk *dev, int ms)
{
  struct pollfd pfd = { .fd = dev->ctl_wake_fd, .events = POLLIN };

  poll (&pfd, 1, ms);
  return atomic_load (&dev->state) == DEV_CLOSING;
}

/* One reconnect attempt: handshake with the same memory, then every ring
 * replayed with the requests that had not completed (see queue_replay
 * for those that fail instead).  Returns 0/-errno. */
static int
try_reconnect (struct vublk *dev)
{
  unsigned failed = 0;
  int err;

  err = handshake_features_and_memory (dev, false);
  if (err)
    return err;
  if (dev->cfg.blk_size != dev->limits.blk_size)
    return set_error (EPROTO, "%s: block size changed across reconnect",
                      dev->socket_path);
  for (unsigned i = 0; i < dev->nqueues; i++)
    failed += queue_replay (&dev->queues[i]);
  err = handshake_rings (dev);
  if (err)
    return err;
  atomic_store (&dev->state, DEV_CONNECTED);
  atomic_fetch_add (&dev->reconnects, 1);
  dev->last_reconnect_ns = now_ns ();
  for (unsigned i = 0; i < dev->nqueues; i++)
    queue_kick (&dev->queues[i]);
  if (failed) {
    pthread_mutex_lock (&dev->info_lock);
    device_log (dev, VUBLK_LOG_ERROR, "%u request(s) failed with EIO: "
                "their replay met the same fault again (%s)", failed,
                dev->violation_reason);
    pthread_mutex_unlock (&dev->info_lock);
  }
  device_log (dev, VUBLK_LOG_INFO, "reconnected (reconnect %llu)",
              (unsigned long long) atomic_load (&dev->reconnects));
  return 0;
}

static void
fail_everything (struct vublk *dev)
{
  for (unsigned i = 0; i < dev->nqueues; i++)
    queue_fail_all (&dev->queues[i], -EIO);
}

/* Why the control thread reconnects. */
enum reconnect_reason {
  RECONNECT_CLOSED,         /* the socket closed or broke */
  RECONNECT_VIOLATION,      /* a queue saw a protocol violation */
  RECONNECT_HUNG,           /* a request outlived the request timeout */
};

/* Closes the control socket and the backend channel. */
static void
drop_connection (struct vublk *dev)
{
  if (dev->sock >= 0) {
    close (dev->sock);
    dev->sock = -1;
  }
  if (dev->backend_fd >= 0) {
    close (dev->backend_fd);
    dev->backend_fd = -1;
  }
}

/* Logs why we reconnect. */
static void
log_reconnect_reason (struct vublk *dev, enum reconnect_reason why)
{
  switch (why) {
  case RECONNECT_VIOLATION:
    pthread_mutex_lock (&dev->info_lock);
    device_log (dev, VUBLK_LOG_WARNING, "backend broke the protocol (%s); "
                "reconnecting", dev->violation_reason);
    pthread_mutex_unlock (&dev->info_lock);
    for (unsigned i = 0; i < dev->nqueues; i++)
      queue_note_violation (&dev->queues[i]);
    break;
  case RECONNECT_HUNG:
    pthread_mutex_lock (&dev->info_lock);
    snprintf (dev->violation_reason, sizeof dev->violation_reason,
              "a request got no answer within %g s",
              dev->opts.request_timeout);
    pthread_mutex_unlock (&dev->info_lock);
    device_log (dev, VUBLK_LOG_WARNING, "a request got no answer within "
                "%g s; reconnecting", dev->opts.request_timeout);
    break;
  case RECONNECT_CLOSED:
    device_log (dev, VUBLK_LOG_WARNING, "backend closed the connection; "
                "reconnecting");
    break;
  }
}

/* Reconnects that follow each other within this time back off, even when
 * each one succeeds: a backend that accepts and then misbehaves at once
 * must not be hammered thousands of times a second. */
#define RECONNECT_CALM_NS 2000000000ull

/* The backend is gone (or misbehaved): reconnect with backoff until the
 * reconnect timeout, then fail what is pending and keep trying slowly. */
static void
reconnect (struct vublk *dev, enum reconnect_reason why)
{
  uint64_t deadline;
  int backoff = BACKOFF_MIN_MS;

  if (atomic_load (&dev->state) == DEV_CONNECTED)
    atomic_store (&dev->state, DEV_RECONNECTING);
  atomic_store (&dev->violation, false);
  drop_connection (dev);
  log_reconnect_reason (dev, why);
  if (dev->last_reconnect_ns
      && now_ns () - dev->last_reconnect_ns < RECONNECT_CALM_NS) {
    dev->reconnect_backoff_ms = dev->reconnect_backoff_ms
                                ? dev->reconnect_backoff_ms * 2
                                : BACKOFF_MIN_MS;
    if (dev->reconnect_backoff_ms > BACKOFF_MAX_MS)
      dev->reconnect_backoff_ms = BACKOFF_MAX_MS;
    device_log (dev, VUBLK_LOG_INFO, "last reconnect was %llu ms ago; "
                "waiting %u ms", (unsigned long long)
                ((now_ns () - dev->last_reconnect_ns) / 1000000),
                dev->reconnect_backoff_ms);
    if (sleep_or_close (dev, dev->reconnect_backoff_ms))
      return;
  }
  else
    dev->reconnect_backoff_ms = 0;
  deadline = now_ns () + (uint64_t) (dev->opts.reconnect_timeout * 1e9);
  for (;;) {
    int err;

    dev->attempt_deadline_ns = deadline;
    err = try_reconnect (dev);
    dev->attempt_deadline_ns = 0;
    if (err == 0)
      return;
    device_log (dev, VUBLK_LOG_DEBUG, "reconnect attempt failed: %s",
                vublk_get_error ());
    if (dev->sock >= 0) {
      close (dev->sock);
      dev->sock = -1;
    }
    if (atomic_load (&dev->state) != DEV_FAILED && now_ns () >= deadline) {
      atomic_store (&dev->state, DEV_FAILED);
      device_log (dev, VUBLK_LOG_ERROR, "backend did not come back within "
                  "%g s (%s); failing pending requests with EIO, still "
                  "trying every second", dev->opts.reconnect_timeout,
                  vublk_get_error ());
      fail_everything (dev);
      return;      /* the control loop retries every second from now on */
    }
    if (sleep_or_close (dev, backoff))
      return;
    backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
  }
}

/* True if any request has waited longer than the request timeout. */
static bool
requests_hung (struct vublk *dev)
{
  uint64_t limit = (uint64_t) (dev->opts.request_timeout * 1e9);
  uint64_t now = now_coarse_ns ();
  bool hung = false;

  if (!limit || now < limit)
    return false;
  for (unsigned i = 0; i < dev->nqueues; i++)
    hung |= queue_scan_timeouts (&dev->queues[i], now - limit);
  return hung;
}

static void *
control_thread (void *arg)
{
  struct vublk *dev = arg;
  uint64_t last_retry = 0;

  /* Every reply this thread waits for gives up once vublk_close begins. */
  vu_set_cancel_fd (dev->close_fd);
  while (atomic_load (&dev->state) != DEV_CLOSING) {
    struct pollfd pfd[3] = {
      { .fd = dev->ctl_wake_fd, .events = POLLIN },
      { .fd = dev->sock, .events = POLLIN | POLLRDHUP },
      { .fd = dev->backend_fd, .events = POLLIN },
    };
    int r = poll (pfd, 3, CONTROL_TICK_MS);

    if (atomic_load (&dev->state) == DEV_CLOSING)
      break;
    if (r > 0 && pfd[0].revents) {
      uint64_t v;
      if (read (dev->ctl_wake_fd, &v, sizeof v) < 0) {
        /* nothing to drain */
      }
    }
    if (atomic_load (&dev->state) == DEV_FAILED) {
      if (now_ns () - last_retry >= 1000000000ull) {
        last_retry = now_ns ();
        if (try_reconnect (dev) != 0 && dev->sock >= 0) {
          close (dev->sock);
          dev->sock = -1;
        }
      }
      continue;
    }
    if (r > 0 && pfd[2].revents)
      handle_backend_message (dev);
    if (atomic_load (&dev->violation))
      reconnect (dev, RECONNECT_VIOLATION);
    else if ((r > 0 && pfd[1].revents) || dev->sock < 0)
      reconnect (dev, RECONNECT_CLOSED);
    else if (requests_hung (dev))
      reconnect (dev, RECONNECT_HUNG);
  }
  return NULL;
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
  dev->sock = dev->backend_fd = dev->ctl_wake_fd = dev->harvest_fd = -1;
  dev->close_fd = -1;
  dev->mem.fd = -1;
  pthread_mutex_init (&dev->range_lock, NULL);
  pthread_mutex_init (&dev->harvest_lock, NULL);
  pthread_mutex_init (&dev->idle_lock, NULL);
  pthread_mutex_init (&dev->info_lock, NULL);
  pthread_cond_init (&dev->idle_cond, NULL);
  if (opts)
    dev->opts = *opts;
  else
    vublk_options_init (&dev->opts);
  if (!dev->opts.queue_size)
    dev->opts.queue_size = DEFAULT_QUEUE_SIZE;
  if (!dev->opts.pool_size)
    dev->opts.pool_size = DEFAULT_POOL_SIZE;
  dev->opts.pool_size = page_align (dev->opts.pool_size);
  dev->socket_path = strdup (socket_path);
  if (!dev->socket_path || check_options (&dev->opts))
    goto error;
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
                  || (dev->features & (1ull << VIRTIO_BLK_F_RO));
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
  err = pthread_create (&dev->ctl_thread, NULL, control_thread, dev);
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
 * lap of them, for at most a second.  Idle device, closing thread only. */
static void
rewind_packed_rings (struct vublk *dev)
{
  uint64_t deadline = now_ns () + 1000000000ull;
  void *buf;

  if (!(dev->features & (1ull << VIRTIO_F_RING_PACKED))
      || atomic_load (&dev->state) != DEV_CONNECTED
      || !(buf = pool_alloc (&dev->mem.pool, VIRTIO_BLK_ID_BYTES)))
    return;
  for (unsigned i = 0; i < dev->nqueues; i++) {
    struct vublk_queue *q = &dev->queues[i];

    for (unsigned n = 0; n < q->ring.num && ring_lap_moved (&q->ring); n++) {
      atomic_uint done = 0;
      struct vublk_io io = {
        .op = VUBLK_OP_GET_ID, .buf = buf, .len = VIRTIO_BLK_ID_BYTES,
        .cb = count_completion, .opaque = &done,
      };

      if (request_submit_to (dev, q, &io) != 0)
        break;
      while (!atomic_load (&done) && now_ns () < deadline)
        usleep (50);
      if (!atomic_load (&done))
        break;       /* vublk_close below waits for it */
    }
  }
  pool_free (&dev->mem.pool, buf);
}

void
vublk_close (struct vublk *dev)
{
  if (!dev)
    return;
  pthread_mutex_lock (&dev->idle_lock);
  while (atomic_load (&dev->outstanding) > 0)
    pthread_cond_wait (&dev->idle_cond, &dev->idle_lock);
  pthread_mutex_unlock (&dev->idle_lock);
  rewind_packed_rings (dev);
  pthread_mutex_lock (&dev->idle_lock);
  while (atomic_load (&dev->outstanding) > 0)
    pthread_cond_wait (&dev->idle_cond, &dev->idle_lock);
  pthread_mutex_unlock (&dev->idle_lock);

  if (dev->ctl_started) {
    uint64_t one = 1;

    atomic_store (&dev->state, DEV_CLOSING);
    if (write (dev->close_fd, &one, sizeof one) < 0) {
      /* cannot fail on a fresh eventfd */
    }
    device_wake_control (dev);
    pthread_join (dev->ctl_thread, NULL);
  }
  handshake_stop_rings (dev);
  device_free (dev);
}

const char *
vublk_get_socket_path (struct vublk *dev)
{
  return dev->socket_path;
}

uint64_t
vublk_get_size (struct vublk *dev)
{
  return atomic_load (&dev->size);
}

int
vublk_get_info (struct vublk *dev, struct vublk_info *info)
{
  const struct blk_config *c = &dev->cfg;
  uint64_t f = dev->features;

  memset (info, 0, sizeof *info);
  pthread_mutex_lock (&dev->info_lock);
  info->size = vublk_get_size (dev);
  info->logical_block_size = c->blk_size;
  info->physical_block_size = c->physical_block_size;
  info->alignment_offset = c->alignment_offset;
  info->min_io_size = c->min_io_size;
  info->opt_io_size = c->opt_io_size;
  info->size_max = c->size_max;
  info->seg_max = c->seg_max;
  info->max_transfer = dev->limits.max_transfer;
  info->max_discard_sectors = c->max_discard_sectors;
  info->max_discard_seg = c->max_discard_seg;
  info->discard_sector_alignment = c->discard_sector_alignment;
  info->max_write_zeroes_sectors = c->max_write_zeroes_sectors;
  info->max_write_zeroes_seg = c->max_write_zeroes_seg;
  info->write_zeroes_may_unmap = c->write_zeroes_may_unmap;
  info->readonly = dev->readonly;
  info->can_flush = f & (1ull << VIRTIO_BLK_F_FLUSH);
  info->can_discard = !dev->readonly && (f & (1ull << VIRTIO_BLK_F_DISCARD));
  info->can_write_zeroes = !dev->readonly
                           && (f & (1ull << VIRTIO_BLK_F_WRITE_ZEROES));
  info->writeback = c->writeback;
  info->num_queues = dev->nqueues;
  info->backend_queues = dev->backend_queues;
  info->queue_size = dev->queue_size;
  info->event_idx = f & (1ull << VIRTIO_RING_F_EVENT_IDX);
  info->indirect_desc = f & (1ull << VIRTIO_RING_F_INDIRECT_DESC);
  info->features = f;
  info->backend_features = dev->backend_features;
  info->protocol_features = dev->protocol_features;
  info->backend_protocol_features = dev->backend_protocol_features;
  pthread_mutex_unlock (&dev->info_lock);
  info->reconnects = atomic_load (&dev->reconnects);
  info->hugetlb = dev->mem.hugetlb;
  info->packed_ring = f & (1ull << VIRTIO_F_RING_PACKED);
  info->shared_memory_size = dev->mem.size;
  return 0;
}

const char *
vublk_feature_name (unsigned bit)
{
  static const char *const names[64] = {
    [VIRTIO_BLK_F_SIZE_MAX] = "SIZE_MAX", [VIRTIO_BLK_F_SEG_MAX] = "SEG_MAX",
    [VIRTIO_BLK_F_GEOMETRY] = "GEOMETRY", [VIRTIO_BLK_F_RO] = "RO",
    [VIRTIO_BLK_F_BLK_SIZE] = "BLK_SIZE", [VIRTIO_BLK_F_FLUSH] = "FLUSH",
    [VIRTIO_BLK_F_TOPOLOGY] = "TOPOLOGY",
    [VIRTIO_BLK_F_CONFIG_WCE] = "CONFIG_WCE", [VIRTIO_BLK_F_MQ] = "MQ",
    [VIRTIO_BLK_F_DISCARD] = "DISCARD",
    [VIRTIO_BLK_F_WRITE_ZEROES] = "WRITE_ZEROES",
    [VIRTIO_F_NOTIFY_ON_EMPTY] = "NOTIFY_ON_EMPTY",
    [VIRTIO_RING_F_INDIRECT_DESC] = "INDIRECT_DESC",
    [VIRTIO_RING_F_EVENT_IDX] = "EVENT_IDX",
    [VHOST_USER_F_PROTOCOL_FEATURES] = "PROTOCOL_FEATURES",
    [VIRTIO_F_VERSION_1] = "VERSION_1", [33] = "ACCESS_PLATFORM",
    [34] = "RING_PACKED", [35] = "IN_ORDER",
  };
  return bit < 64 ? names[bit] : NULL;
}

const char *
vublk_protocol_feature_name (unsigned bit)
{
  static const char *const names[64] = {
    [0] = "MQ", [1] = "LOG_SHMFD", [2] = "RARP", [3] = "REPLY_ACK",
    [4] = "NET_MTU", [5] = "BACKEND_REQ", [6] = "CROSS_ENDIAN",
    [7] = "CRYPTO_SESSION", [8] = "PAGEFAULT", [9] = "CONFIG",
    [10] = "BACKEND_SEND_FD", [11] = "HOST_NOTIFIER",
    [12] = "INFLIGHT_SHMFD", [13] = "RESET_DEVICE",
    [14] = "INBAND_NOTIFICATIONS", [15] = "CONFIGURE_MEM_SLOTS",
    [16] = "STATUS",
  };
  return bit < 64 ? names[bit] : NULL;
}
