/* close.c — vublk_close: lets go of this thread's claim, waits until
 * nothing is in flight, leaves packed rings where the next client expects
 * them, stops the control thread, the rings and the completion threads,
 * and drops the open's reference (device.c frees the memory with the
 * last one).
 */
#define _GNU_SOURCE
#include <unistd.h>

#include "internal.h"

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
    if (ring_lap_moved (&q->ring))
      device_log (dev, VUBLK_LOG_DEBUG, "closing: moving queue %u's packed "
                  "ring back to its first lap (harmless get-id requests, "
                  "for at most 1 s)", q->index);
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
