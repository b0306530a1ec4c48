/* aio.c — the public asynchronous API: validating a request against the
 * device (range, read-only, supported operations) before accepting it,
 * the harvest queue for callback-less completions, and buffers in the
 * shared pool. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Checks io against the device; returns 0 or -errno with the error set. */
static int
validate (struct vublk *dev, const struct vublk_io *io)
{
  uint64_t size = vublk_get_size (dev);
  const struct op_desc *op = op_desc (io->op);

  if (!op)
    return set_error (EINVAL, "%s: unknown operation %d", dev->socket_path,
                      (int) io->op);
  if (io->flags & ~(VUBLK_F_UNMAP | VUBLK_F_FUA))
    return set_error (EINVAL, "%s: %s: unknown flags 0x%x", dev->socket_path,
                      op_name (io->op), io->flags);
  if (op->modifies && device_readonly (dev))
    return set_error (EROFS, "%s: %s: device is read-only%s",
                      dev->socket_path, op->name, dev->readonly ? ""
                      : " (the backend came back read-only)");
  if (op->feature >= 0 && !op->no_op_without_feature
      && !device_has (dev, op->feature))
    return set_error (ENOTSUP, "%s: device does not support %s",
                      dev->socket_path, op->name);
  if (op->needs_buffer && !io->buf && io->len)
    return set_error (EINVAL, "%s: %s: no buffer", dev->socket_path,
                      op->name);
  if (io->op == VUBLK_OP_GET_ID && io->len < 1)
    return set_error (EINVAL, "%s: get-id: buffer too small",
                      dev->socket_path);
  if (op->ranged) {
    if (io->len > size || io->offset > size - io->len)
      return set_error (op->modifies ? ENOSPC : EINVAL,
                        "%s: %s of %zu bytes at offset %llu is beyond the "
                        "end of the device (%llu bytes)", dev->socket_path,
                        op_name (io->op), io->len,
                        (unsigned long long) io->offset,
                        (unsigned long long) size);
  }
  if (atomic_load (&dev->state) == DEV_FAILED)
    return aio_failed_error (dev, io->op, op->ranged, io->offset);
  if (atomic_load (&dev->state) >= DEV_CLOSING)
    return set_error (EIO, "%s: device is closing", dev->socket_path);
  return 0;
}

int
aio_failed_error (struct vublk *dev, enum vublk_op op, bool with_offset,
                  uint64_t offset)
{
  char at[40] = "", why[sizeof dev->failure_reason];

  if (with_offset)
    snprintf (at, sizeof at, " at offset %llu", (unsigned long long) offset);
  pthread_mutex_lock (&dev->info_lock);
  snprintf (why, sizeof why, "%s", dev->failure_reason);
  pthread_mutex_unlock (&dev->info_lock);
  return set_error (EIO, "%s: %s%s: the device failed: no reconnect to the "
                    "backend succeeded within %g s (last attempt: %s)",
                    dev->socket_path, op_name (op), at,
                    dev->opts.reconnect_timeout, why);
}

/* Makes sure the harvest queue has room for one more completion beyond
 * those already promised.  Returns 0 or -ENOMEM (error set). */
static int
harvest_reserve (struct vublk *dev)
{
  int err = 0;

  pthread_mutex_lock (&dev->harvest_lock);
  if (dev->harvest_len + dev->harvest_reserved == dev->harvest_cap) {
    size_t cap = dev->harvest_cap ? 2 * dev->harvest_cap : 64;
    struct vublk_completion *n = realloc (dev->harvest, cap * sizeof *n);

    if (n) {
      dev->harvest = n;
      dev->harvest_cap = cap;
    }
    else
      err = set_error (ENOMEM, "%s: no memory for another completion",
                       dev->socket_path);
  }
  if (!err)
    dev->harvest_reserved++;
  pthread_mutex_unlock (&dev->harvest_lock);
  return err;
}

int
aio_submit_to (struct vublk *dev, struct vublk_queue *q,
               const struct vublk_io *io)
{
  struct request *req = request_new (dev, q, io);

  if (!req)
    return -ENOMEM;
  /* A completion without a callback needs a place in the harvest queue:
   * taken now, so delivering it can never fail for memory. */
  if (!io->cb && harvest_reserve (dev) != 0) {
    free (req);
    return -ENOMEM;
  }
  atomic_fetch_add (&dev->outstanding, 1);
  /* A write whose blocks another write holds is enqueued when that one
   * finishes. */
  if (req->write_range && !range_lock_acquire (dev, req))
    return 0;
  queue_enqueue (q, req);
  return 0;
}

int
aio_submit_checked (struct vublk *dev, struct vublk_queue *q,
                    const struct vublk_io *io)
{
  int err = validate (dev, io);
  const struct op_desc *op;

  if (err)
    return err;
  op = op_desc (io->op);             /* known: validated */
  /* Nothing to do, completed through the queue like any request (so
   * the callback runs where the caller expects it): a flush without a
   * volatile cache (every completed write is already stable), and a
   * request for zero bytes, which must not be planned (an unaligned
   * offset would make it a read-modify-write of a whole block). */
  if ((op->no_op_without_feature && !device_has (dev, op->feature))
      || (op->ranged && io->len == 0)) {
    struct vublk_io done = *io;
    done.op = VUBLK_OP_READ;
    done.offset = 0;
    done.len = 0;
    return aio_submit_to (dev, q, &done);
  }
  return aio_submit_to (dev, q, io);
}

int
vublk_aio_submit (struct vublk *dev, const struct vublk_io *io)
{
  return aio_submit_checked (dev, queue_for_current_thread (dev), io);
}

int
vublk_aio_harvest (struct vublk *dev, struct vublk_completion *out,
                   unsigned max)
{
  unsigned n;

  pthread_mutex_lock (&dev->harvest_lock);
  n = dev->harvest_len < max ? dev->harvest_len : max;
  memcpy (out, dev->harvest, n * sizeof *out);
  memmove (dev->harvest, dev->harvest + n,
           (dev->harvest_len - n) * sizeof *out);
  dev->harvest_len -= n;
  if (dev->harvest_len == 0)
    eventfd_drain (dev->harvest_fd);
  pthread_mutex_unlock (&dev->harvest_lock);
  return n;
}

int
vublk_aio_completion_fd (struct vublk *dev)
{
  return dev->harvest_fd;
}

void *
vublk_buf_alloc (struct vublk *dev, size_t len)
{
  void *p = pool_alloc (&dev->mem.pool, len);

  if (!p)
    set_error (ENOMEM, "%s: shared buffer pool has no %zu free bytes",
               dev->socket_path, len);
  return p;
}

void
vublk_buf_free (struct vublk *dev, void *buf)
{
  if (buf && pool_contains (&dev->mem.pool, buf, 1))
    pool_free (&dev->mem.pool, buf);
}
