/* sync.c — synchronous helpers built on vublk_aio_submit (libnbd's rw.c
 * pattern): submit with a callback, then sleep on a futex until it runs.
 * Any number of threads may call them at once; each call is one request
 * in flight. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

/* A request's state, as seen by the thread that waits for it. */
enum {
  SYNC_PENDING,
  SYNC_DONE,
  SYNC_SLEEPING,             /* pending, and the waiter sleeps on the futex */
};

struct sync_wait {
  _Atomic uint32_t state;
  int result;
};

/* Completion callback: records the result and wakes the waiter only if
 * it sleeps on the futex.  A thread that drives its queue, or that
 * harvested its own completion while spinning, never sleeps there, and
 * a wake for nobody is a system call per request (two thirds of the
 * plugin's futex calls at 4k QD32). */
static void
sync_complete (void *opaque, int result)
{
  struct sync_wait *w = opaque;

  w->result = result;
  if (atomic_exchange (&w->state, SYNC_DONE) == SYNC_SLEEPING)
    syscall (SYS_futex, &w->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Sleeps until sync_complete has run for w. */
static void
sync_sleep (struct sync_wait *w)
{
  for (;;) {
    uint32_t seen = SYNC_PENDING;

    if (!atomic_compare_exchange_strong (&w->state, &seen, SYNC_SLEEPING)
        && seen == SYNC_DONE)
      return;
    syscall (SYS_futex, &w->state, FUTEX_WAIT_PRIVATE, SYNC_SLEEPING,
             NULL, NULL, 0);
  }
}

/* Submits io and waits for it.  Returns 0 or -errno. */
static int
sync_io (struct vublk *dev, struct vublk_io io)
{
  struct sync_wait w = { .state = SYNC_PENDING, .result = 0 };
  struct vublk_tq *tq = driven_handle_of_thread (dev);
  int err;

  io.cb = sync_complete;
  io.opaque = &w;
  if (tq) {
    /* This thread drives its queue: the completion runs here. */
    err = vublk_tq_submit (tq, &io);
    while (!err && atomic_load (&w.state) != SYNC_DONE) {
      int r = vublk_tq_process (tq, 1, -1);
      if (r < 0)
        err = r;
    }
    driven_leave_if_shared (tq);
    if (err)
      return err;
    goto done;
  }
  err = vublk_aio_submit (dev, &io);
  if (err)
    return err;
  /* At low queue depth, harvesting our own completion saves two thread
   * wake-ups (the completion thread's and ours). */
  if (dev->opts.spin_us)
    while (atomic_load (&w.state) != SYNC_DONE
           && vublk_aio_spin (dev, dev->opts.spin_us * 1000ull, -1))
      ;
  sync_sleep (&w);
 done:
  if (w.result == -EIO && atomic_load (&dev->state) == DEV_FAILED)
    return aio_failed_error (dev, io.op, op_desc (io.op)->ranged, io.offset);
  if (w.result)
    set_error (-w.result, "%s: %s at offset %llu failed: %s",
               dev->socket_path, op_name (io.op),
               (unsigned long long) io.offset, strerror (-w.result));
  return w.result;
}

ssize_t
vublk_pread (struct vublk *dev, void *buf, size_t len, uint64_t offset)
{
  uint64_t size = vublk_get_size (dev);
  int err;

  if (offset >= size)
    return 0;
  if (len > size - offset)
    len = size - offset;
  if (len > SSIZE_MAX)
    len = SSIZE_MAX;
  err = sync_io (dev, (struct vublk_io) {
    .op = VUBLK_OP_READ, .offset = offset, .buf = buf, .len = len,
  });
  return err ? err : (ssize_t) len;
}

ssize_t
vublk_pwrite (struct vublk *dev, const void *buf, size_t len,
              uint64_t offset, uint32_t flags)
{
  int err;

  if (len > SSIZE_MAX)
    return set_error (EINVAL, "%s: write of %zu bytes is too large",
                      dev->socket_path, len);
  err = sync_io (dev, (struct vublk_io) {
    .op = VUBLK_OP_WRITE, .flags = flags, .offset = offset,
    .buf = (void *) buf, .len = len,
  });
  return err ? err : (ssize_t) len;
}

int
vublk_flush (struct vublk *dev)
{
  return sync_io (dev, (struct vublk_io) { .op = VUBLK_OP_FLUSH });
}

int
vublk_discard (struct vublk *dev, uint64_t offset, uint64_t len)
{
  return sync_io (dev, (struct vublk_io) {
    .op = VUBLK_OP_DISCARD, .offset = offset, .len = len,
  });
}

int
vublk_write_zeroes (struct vublk *dev, uint64_t offset, uint64_t len,
                    uint32_t flags)
{
  return sync_io (dev, (struct vublk_io) {
    .op = VUBLK_OP_WRITE_ZEROES, .flags = flags, .offset = offset, .len = len,
  });
}

int
vublk_get_serial (struct vublk *dev, char serial[21])
{
  memset (serial, 0, 21);
  return sync_io (dev, (struct vublk_io) {
    .op = VUBLK_OP_GET_ID, .buf = serial, .len = 21,
  });
}
