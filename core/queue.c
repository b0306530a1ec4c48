/* queue.c — one virtqueue's submission side: its slots (one virtio-blk
 * request each, with a control block in shared memory: header, discard
 * segment, status byte, indirect table), the pending list of requests
 * waiting for a slot or pool memory, the pump that turns them into chunks
 * on the ring (ring.c decides where descriptors go), batched
 * notifications (plugging), and which queue a thread submits to.
 * completion.c harvests what comes back; replay.c recovers after a
 * reconnect.
 *
 * Locking: q->lock guards the ring, the slots and the pending list.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"


size_t
queue_ring_bytes (unsigned num)
{
  return ring_bytes (num);
}

size_t
queue_ctl_bytes (unsigned num)
{
  return (size_t) num * sizeof (struct slot_ctl);
}

int
queue_init (struct vublk_queue *q, struct vublk *dev, unsigned index,
            void *ring_mem, struct slot_ctl *ctl_mem, unsigned num)
{
  memset (q, 0, sizeof *q);
  q->dev = dev;
  q->index = index;
  q->kick_fd = q->call_fd = q->wake_fd = -1;
  pthread_mutex_init (&q->lock, NULL);
  ring_init (&q->ring, ring_mem, num,
             device_has (dev, VIRTIO_F_RING_PACKED),
             device_has (dev, VIRTIO_RING_F_INDIRECT_DESC),
             device_has (dev, VIRTIO_RING_F_EVENT_IDX));
  q->nslots = ring_slots (&q->ring);
  q->slots = calloc (q->nslots, sizeof *q->slots);
  q->recovery_chunks = calloc (q->nslots, sizeof *q->recovery_chunks);
  q->recovery_order = calloc (q->nslots, sizeof *q->recovery_order);
  if (!q->slots || !q->recovery_chunks || !q->recovery_order)
    return set_error (ENOMEM, "allocating %u slots", q->nslots);
  for (unsigned i = 0; i < q->nslots; i++) {
    q->slots[i].ctl = &ctl_mem[i];
    q->slots[i].ctl_addr = (uint64_t) (uintptr_t) &ctl_mem[i];
    q->slots[i].next_free = i + 1 < q->nslots ? (int16_t) (i + 1) : -1;
  }
  q->free_head = 0;
  q->kick_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  q->call_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  q->wake_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (q->kick_fd == -1 || q->call_fd == -1 || q->wake_fd == -1)
    return set_error_errno (errno, "eventfd for queue %u", index);
  return 0;
}

bool
queue_has_work (struct vublk_queue *q)
{
  bool busy;

  pthread_mutex_lock (&q->lock);
  busy = q->inflight > 0 || q->pending_head || q->handoff || q->done_list;
  pthread_mutex_unlock (&q->lock);
  return busy;
}

void
queue_mark_unopened (struct vublk_queue *q)
{
  q->kick_fd = q->call_fd = q->wake_fd = -1;
}

void
queue_destroy (struct vublk_queue *q)
{
  if (q->kick_fd >= 0)
    close (q->kick_fd);
  if (q->call_fd >= 0)
    close (q->call_fd);
  if (q->wake_fd >= 0)
    close (q->wake_fd);
  q->kick_fd = q->call_fd = q->wake_fd = -1;
  if (q->slots)
    pthread_mutex_destroy (&q->lock);
  free (q->slots);
  free (q->recovery_chunks);
  free (q->recovery_order);
  q->slots = NULL;
  q->recovery_chunks = NULL;
  q->recovery_order = NULL;
}

void
queue_wake (struct vublk_queue *q)
{
  eventfd_signal (q->wake_fd);
}

void
queue_wake_harvester (struct vublk_queue *q)
{
  if (atomic_load (&q->driven))
    eventfd_signal (q->call_fd);
  else
    queue_wake (q);
}

/* Puts slot s's chain (header, data or segment, status) on the ring.
 * Header and status are always descriptors of their own: every backend
 * accepts that, and SPDK insists. */
static void
slot_place (struct vublk_queue *q, struct slot *s)
{
  struct vring_desc chain[3];
  unsigned n = 0;

  chain[n++] = (struct vring_desc) {
    .addr = s->ctl_addr + offsetof (struct slot_ctl, type),
    .len = 16, .flags = VRING_DESC_F_NEXT,
  };
  if (s->type == VIRTIO_BLK_T_DISCARD || s->type == VIRTIO_BLK_T_WRITE_ZEROES)
    chain[n++] = (struct vring_desc) {
      .addr = s->ctl_addr + offsetof (struct slot_ctl, seg_sector),
      .len = 16, .flags = VRING_DESC_F_NEXT,
    };
  else if (s->data_len > 0)
    chain[n++] = (struct vring_desc) {
      .addr = (uint64_t) (uintptr_t) s->data, .len = s->data_len,
      .flags = VRING_DESC_F_NEXT | (s->device_writes ? VRING_DESC_F_WRITE : 0),
    };
  chain[n++] = (struct vring_desc) {
    .addr = s->ctl_addr + offsetof (struct slot_ctl, status),
    .len = 1, .flags = VRING_DESC_F_WRITE,
  };
  s->placed_at_seen = ring_seen (&q->ring);
  ring_place (&q->ring, s - q->slots, chain, n, s->ctl->indirect,
              s->ctl_addr + offsetof (struct slot_ctl, indirect));
}

/* A thread between vublk_aio_plug and vublk_aio_unplug: the queues it
 * filled (bit per queue index) are published and notified at unplug, or
 * as soon as a queue holds PLUG_FLUSH_BYTES of unannounced data — small
 * requests are batched, while a large one reaches the backend at once
 * instead of idling it while more are read in. */
#define PLUG_FLUSH_BYTES (256u * 1024)
static HOT_THREAD_LOCAL struct vublk *tls_plug_dev;
static HOT_THREAD_LOCAL uint64_t tls_plug_queues;
static HOT_THREAD_LOCAL uint64_t tls_plug_bytes;

/* Publishes what was pushed and notifies the backend if it asked. */
static void
queue_notify_locked (struct vublk_queue *q)
{
  if (ring_publish (&q->ring))
    eventfd_signal (q->kick_fd);
}

void
queue_place_slot_locked (struct vublk_queue *q, struct slot *s)
{
  s->ctl->status = 0xff;   /* not a status a device writes */
  slot_place (q, s);
}

/* Moves req off the head of the pending list. */
static void
pending_pop_locked (struct vublk_queue *q)
{
  struct request *req = q->pending_head;

  q->pending_head = req->next;
  if (!q->pending_head)
    q->pending_tail = NULL;
  req->next = NULL;
}

/* Appends the list head..tail to the pending list. */
static void
append_pending_locked (struct vublk_queue *q, struct request *head,
                       struct request *tail)
{
  if (q->pending_tail)
    q->pending_tail->next = head;
  else
    q->pending_head = head;
  q->pending_tail = tail;
}

bool
queue_phase_end_locked (struct vublk_queue *q, struct request *req)
{
  if (request_phase_end (req))
    return true;
  req->next = NULL;
  append_pending_locked (q, req, req);
  return false;
}

/* Parks a finished request for whoever harvests q: its completion
 * thread, or the owner of a driven queue. */
static void
park_done_locked (struct vublk_queue *q, struct request *req)
{
  req->phase = PHASE_DONE;
  req->next = q->done_list;
  /* Atomic: queue_process peeks at it without the lock. */
  __atomic_store_n (&q->done_list, req, __ATOMIC_RELAXED);
  queue_wake_harvester (q);
}

/* Takes the request at the head of q's pending list off it and fails it
 * with err (unless it already failed): at once if nothing of it is in
 * flight, else when its last chunk completes. */
static void
fail_pending_head_locked (struct vublk_queue *q, int err)
{
  struct request *req = q->pending_head;

  pending_pop_locked (q);
  if (!req->error)
    req->error = err;
  req->generated_all = true;
  if (req->outstanding == 0)
    park_done_locked (q, req);
}

void
queue_fail_pending_locked (struct vublk_queue *q, int err)
{
  while (q->pending_head)
    fail_pending_head_locked (q, err);
}

/* Notes that req, at the head of q's pending list, found the pool short.
 * If it has waited longer than the request timeout, fails it with
 * -ENOMEM (logged once per device) and returns true. */
static bool
pool_starved_locked (struct vublk_queue *q, struct request *req)
{
  struct vublk *dev = q->dev;
  uint64_t limit = (uint64_t) (dev->opts.request_timeout * 1e9);
  uint64_t now = now_coarse_ns ();

  if (!req->pool_wait_since) {
    req->pool_wait_since = now;
    return false;
  }
  if (!limit || now - req->pool_wait_since < limit)
    return false;
  if (device_first_time (dev, ONCE_POOL_STARVED))
    device_log (dev, VUBLK_LOG_WARNING, "the shared buffer pool (%zu "
                "bytes) had no room for a request for %.0f s; failing it "
                "with ENOMEM (a larger pool-size, or fewer buffers held "
                "with vublk_buf_alloc, avoids this)", dev->opts.pool_size,
                dev->opts.request_timeout);
  fail_pending_head_locked (q, -ENOMEM);
  return true;
}

void
queue_pump_locked (struct vublk_queue *q)
{
  struct vublk *dev = q->dev;
  bool pushed = false;
  uint64_t bytes = 0;

  if (atomic_load (&dev->state) == DEV_FAILED)
    queue_fail_pending_locked (q, -EIO);
  if (atomic_load (&dev->state) != DEV_CONNECTED)
    return;
  while (q->pending_head && q->free_head >= 0) {
    struct request *req = q->pending_head;
    struct slot *s = &q->slots[q->free_head];
    int r = request_fill_slot (req, s);

    if (r == 1) {
      req->pool_wait_since = 0;
      q->free_head = s->next_free;
      s->req = req;
      s->seq = q->next_seq++;
      s->submit_ns = now_coarse_ns ();
      s->timeouts = 0;
      s->violations = 0;
      s->drops = 0;
      s->abandon = false;
      req->outstanding++;
      __atomic_store_n (&q->inflight, q->inflight + 1, __ATOMIC_RELAXED);
      queue_place_slot_locked (q, s);
      if (q->recent[0] != s) {
        __atomic_store_n (&q->recent[1], q->recent[0], __ATOMIC_RELAXED);
        __atomic_store_n (&q->recent[0], s, __ATOMIC_RELAXED);
      }
      bytes += s->data_len;
      pushed = true;
    }
    else if (r == 0) {
      pending_pop_locked (q);
      req->generated_all = true;
      if (req->outstanding == 0 && queue_phase_end_locked (q, req))
        /* Finished without a chunk in flight (an empty discard, a failed
         * device): the completion thread runs its callback unlocked. */
        park_done_locked (q, req);
    }
    else if (pool_starved_locked (q, req))
      continue;       /* failed, next one */
    else
      break;          /* pool memory short: a completion will retry */
  }
  if (!pushed)
    return;
  if (tls_plug_dev == dev && q->index < 64) {
    tls_plug_queues |= 1ull << q->index;   /* notified at unplug */
    tls_plug_bytes += bytes;
    if (tls_plug_bytes < PLUG_FLUSH_BYTES)
      return;
    tls_plug_bytes = 0;
  }
  queue_notify_locked (q);
}

void
vublk_aio_plug (struct vublk *dev)
{
  /* Already plugged here: what waits stays counted for its unplug. */
  if (tls_plug_dev == dev)
    return;
  /* Plugged on another device (a callback plugging inside a batch of
   * vublk_tq_process, say): its waiting requests are announced now, so
   * that the switch never strands them. */
  if (tls_plug_dev)
    vublk_aio_unplug (tls_plug_dev);
  tls_plug_dev = dev;
  tls_plug_queues = 0;
  tls_plug_bytes = 0;
}

bool
queue_plug_unless_plugged (struct vublk *dev)
{
  if (tls_plug_dev)
    return false;
  vublk_aio_plug (dev);
  return true;
}

void
vublk_aio_unplug (struct vublk *dev)
{
  uint64_t queues = tls_plug_queues;

  /* Not this device's plug (none, or another device's): nothing of dev
   * is waiting on this thread. */
  if (tls_plug_dev != dev)
    return;
  tls_plug_dev = NULL;
  tls_plug_queues = 0;
  for (unsigned i = 0; queues && i < dev->nqueues; i++)
    if (queues & (1ull << i)) {
      struct vublk_queue *q = &dev->queues[i];

      pthread_mutex_lock (&q->lock);
      queue_notify_locked (q);
      pthread_mutex_unlock (&q->lock);
      queues &= ~(1ull << i);
    }
}

/* Requests submitted from completion callbacks running on this thread
 * for queue tls_completing are collected here and issued together when
 * the batch of callbacks ends: one publish and at most one notification
 * per batch instead of one per request. */
static HOT_THREAD_LOCAL struct vublk_queue *tls_completing;
static HOT_THREAD_LOCAL struct request *tls_deferred_head, *tls_deferred_tail;

void
queue_enqueue (struct vublk_queue *q, struct request *req)
{
  req->next = NULL;
  if (tls_completing == q) {
    if (tls_deferred_tail)
      tls_deferred_tail->next = req;
    else
      tls_deferred_head = req;
    tls_deferred_tail = req;
    return;
  }
  pthread_mutex_lock (&q->lock);
  append_pending_locked (q, req, req);
  queue_pump_locked (q);
  pthread_mutex_unlock (&q->lock);
}

struct vublk_queue *
queue_for_current_thread (struct vublk *dev)
{
  static atomic_uint next_thread_id;
  static HOT_THREAD_LOCAL unsigned thread_id = UINT32_MAX;

  /* A callback resubmitting stays on the queue it completes for. */
  if (tls_completing && tls_completing->dev == dev)
    return tls_completing;
  if (thread_id == UINT32_MAX)
    thread_id = atomic_fetch_add (&next_thread_id, 1);
  /* Other threads' queues are theirs: completions there wait for their
   * owner.  Only if every queue is driven does a request go to one: the
   * caller's own if it drives one of dev's (its vublk_tq_process then
   * completes the request), else one picked by thread. */
  for (unsigned i = 0; i < dev->nqueues; i++) {
    struct vublk_queue *q = &dev->queues[(thread_id + i) % dev->nqueues];
    if (!atomic_load_explicit (&q->driven, memory_order_relaxed))
      return q;
  }
  const struct vublk_queue *own = thread_driven_queue ();
  if (own && own->dev == dev)
    return &dev->queues[own->index];
  /* Not a queue a synchronous call claimed: its owner harvests only while
   * inside a call, and may not call again for a long time. */
  for (unsigned i = 0; i < dev->nqueues; i++) {
    struct vublk_queue *q = &dev->queues[(thread_id + i) % dev->nqueues];
    if (!atomic_load_explicit (&q->sync_claimed, memory_order_relaxed))
      return q;
  }
  return &dev->queues[thread_id % dev->nqueues];
}

struct vublk_queue *
queue_begin_callbacks (struct vublk_queue *q)
{
  struct vublk_queue *outer = tls_completing;

  tls_completing = q;
  return outer;
}

void
queue_end_callbacks (struct vublk_queue *q, struct vublk_queue *outer)
{
  struct request *head = tls_deferred_head, *tail = tls_deferred_tail;

  tls_completing = outer;
  tls_deferred_head = tls_deferred_tail = NULL;
  /* Even with nothing submitted, requests that moved to their next phase
   * wait on the pending list: always pump. */
  pthread_mutex_lock (&q->lock);
  if (head)
    append_pending_locked (q, head, tail);
  queue_pump_locked (q);
  pthread_mutex_unlock (&q->lock);
}

void
queue_kick (struct vublk_queue *q)
{
  pthread_mutex_lock (&q->lock);
  queue_pump_locked (q);
  pthread_mutex_unlock (&q->lock);
  eventfd_signal (q->kick_fd);
}

