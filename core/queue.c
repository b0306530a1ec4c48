/* queue.c — one virtqueue: its slots (one virtio-blk request each), the
 * descriptors that describe them, submission with batched notifications,
 * and the completion thread that harvests the used ring.
 *
 * Each slot owns a control block in shared memory (header, discard
 * segment, status byte, indirect table).  With INDIRECT_DESC a request
 * takes one ring descriptor (slot i = descriptor i); without it, a fixed
 * chain of three (slot i = descriptors 3i..3i+2), so no descriptor free
 * list is needed.  Header and status are always separate descriptors,
 * which every backend accepts (SPDK insists).
 *
 * Locking: q->lock guards the ring, the slots and the pending list.  The
 * completion thread takes it to harvest and refill, then drops it to copy
 * data out and run callbacks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

#define HARVEST_BATCH 64
#define POLL_SPIN_NS 50000ull     /* adaptive polling window */

static bool
negotiated (const struct vublk_queue *q, unsigned bit)
{
  return q->dev->features & (1ull << bit);
}

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
             negotiated (q, VIRTIO_F_RING_PACKED),
             negotiated (q, VIRTIO_RING_F_INDIRECT_DESC),
             negotiated (q, VIRTIO_RING_F_EVENT_IDX));
  q->nslots = ring_slots (&q->ring);
  q->slots = calloc (q->nslots, sizeof *q->slots);
  if (!q->slots)
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
  q->slots = NULL;
}

void
queue_wake (struct vublk_queue *q)
{
  uint64_t one = 1;

  if (write (q->wake_fd, &one, sizeof one) < 0) {
    /* EAGAIN: the counter is saturated, the thread will wake anyway. */
  }
}

static void
drain_eventfd (int fd)
{
  uint64_t v;

  if (read (fd, &v, sizeof v) < 0) {
    /* EAGAIN: nothing to drain. */
  }
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
  ring_place (&q->ring, s - q->slots, chain, n, s->ctl->indirect,
              s->ctl_addr + offsetof (struct slot_ctl, indirect));
}

/* A thread between vublk_aio_plug and vublk_aio_unplug: the queues it
 * filled (bit per queue index) are published and notified at unplug, or
 * as soon as a queue holds PLUG_FLUSH_BYTES of unannounced data — small
 * requests are batched, while a large one reaches the backend at once
 * instead of idling it while more are read in. */
#define PLUG_FLUSH_BYTES (256u * 1024)
static __thread struct vublk *tls_plug_dev;
static __thread uint64_t tls_plug_queues;
static __thread uint64_t tls_plug_bytes;

/* Publishes what was pushed and notifies the backend if it asked. */
static void
queue_notify_locked (struct vublk_queue *q)
{
  if (ring_publish (&q->ring)) {
    uint64_t one = 1;
    if (write (q->kick_fd, &one, sizeof one) < 0) {
      /* EAGAIN: counter saturated, the backend is notified anyway. */
    }
  }
}

/* Places slot s on the ring. */
static void
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

/* Advances req to its next phase when its current one has finished.
 * Returns true if req is now complete (the caller completes it). */
static bool
request_phase_end_locked (struct vublk_queue *q, struct request *req);

/* Parks a finished request for the completion thread. */
static void
park_done_locked (struct vublk_queue *q, struct request *req)
{
  req->phase = PHASE_DONE;
  req->next = q->done_list;
  q->done_list = req;
  queue_wake (q);
}

/* Fails every request on the pending list: those with nothing in flight
 * finish now, the others when their last chunk comes back. */
static void
fail_pending_locked (struct vublk_queue *q, int err)
{
  while (q->pending_head) {
    struct request *req = q->pending_head;

    pending_pop_locked (q);
    if (!req->error)
      req->error = err;
    req->generated_all = true;
    if (req->outstanding == 0)
      park_done_locked (q, req);
  }
}

void
queue_pump_locked (struct vublk_queue *q)
{
  struct vublk *dev = q->dev;
  bool pushed = false;
  uint64_t bytes = 0;

  if (atomic_load (&dev->state) == DEV_FAILED)
    fail_pending_locked (q, -EIO);
  if (atomic_load (&dev->state) != DEV_CONNECTED)
    return;
  while (q->pending_head && q->free_head >= 0) {
    struct request *req = q->pending_head;
    struct slot *s = &q->slots[q->free_head];
    int r = request_fill_slot (req, s);

    if (r == 1) {
      q->free_head = s->next_free;
      s->req = req;
      s->seq = atomic_fetch_add (&dev->seq, 1);
      s->submit_ns = now_coarse_ns ();
      s->timeouts = 0;
      s->violations = 0;
      s->abandon = false;
      req->outstanding++;
      __atomic_fetch_add (&q->inflight, 1, __ATOMIC_RELAXED);
      queue_place_slot_locked (q, s);
      bytes += s->data_len;
      pushed = true;
    }
    else if (r == 0) {
      pending_pop_locked (q);
      req->generated_all = true;
      if (req->outstanding == 0 && request_phase_end_locked (q, req))
        /* Finished without a chunk in flight (an empty discard, a failed
         * device): the completion thread runs its callback unlocked. */
        park_done_locked (q, req);
    }
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

static bool
request_phase_end_locked (struct vublk_queue *q, struct request *req)
{
  bool fua = req->io.op == VUBLK_OP_WRITE && (req->io.flags & VUBLK_F_FUA)
             && (q->dev->features & (1ull << VIRTIO_BLK_F_FLUSH));

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
  req->next = NULL;
  if (q->pending_tail)
    q->pending_tail->next = req;
  else
    q->pending_head = req;
  q->pending_tail = req;
  return false;
}

void
vublk_aio_plug (struct vublk *dev)
{
  tls_plug_dev = dev;
  tls_plug_queues = 0;
  tls_plug_bytes = 0;
}

void
vublk_aio_unplug (struct vublk *dev)
{
  uint64_t queues = tls_plug_queues;

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
static __thread struct vublk_queue *tls_completing;
static __thread struct request *tls_deferred_head, *tls_deferred_tail;

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
  static __thread unsigned thread_id = UINT32_MAX;

  /* A callback resubmitting stays on the queue it completes for. */
  if (tls_completing && tls_completing->dev == dev)
    return tls_completing;
  if (thread_id == UINT32_MAX)
    thread_id = atomic_fetch_add (&next_thread_id, 1);
  return &dev->queues[thread_id % dev->nqueues];
}

/* Runs request_finish (callbacks) for a list of finished requests, then
 * issues what they submitted in one batch. */
static void
run_finished (struct vublk_queue *q, struct request *list)
{
  struct vublk_queue *outer = tls_completing;
  struct request *head, *tail;

  /* Even with nothing finished, requests that moved to their next phase
   * wait on the pending list: always pump. */
  tls_completing = q;
  while (list) {
    struct request *next = list->next;
    request_finish (list);
    list = next;
  }
  tls_completing = outer;
  head = tls_deferred_head;
  tail = tls_deferred_tail;
  tls_deferred_head = tls_deferred_tail = NULL;
  pthread_mutex_lock (&q->lock);
  if (head)
    append_pending_locked (q, head, tail);
  queue_pump_locked (q);
  pthread_mutex_unlock (&q->lock);
}

/* What the completion path needs of a finished slot once the lock is
 * dropped. */
struct finished_chunk {
  struct request *req;
  int result;
  void *bounce;
  void *copy_out;
  uint32_t copy_out_skip, copy_out_len;
};

static int
status_to_result (uint8_t status)
{
  switch (status) {
  case VIRTIO_BLK_S_OK: return 0;
  case VIRTIO_BLK_S_UNSUPP: return -ENOTSUP;
  default: return -EIO;
  }
}

/* Marks the connection broken after a protocol violation: the control
 * thread is woken to reconnect, resubmitting what was in flight (it alone
 * owns the socket; a queue thread closing it could hit a reused fd).  The
 * ring is not read again until the replay resets it, so the violation is
 * acted on once.  q->lock held. */
static void
queue_protocol_violation (struct vublk_queue *q)
{
  struct vublk *dev = q->dev;

  if (q->broken)
    return;
  /* What the backend did (this thread's last error) travels to the
   * control thread, which logs it and fails the requests if it recurs. */
  pthread_mutex_lock (&dev->info_lock);
  snprintf (dev->violation_reason, sizeof dev->violation_reason, "%s",
            vublk_get_error ());
  pthread_mutex_unlock (&dev->info_lock);
  __atomic_store_n (&q->broken, true, __ATOMIC_RELAXED);
  atomic_store (&q->dev->violation, true);
  device_wake_control (q->dev);
}

/* Releases slot s into out and back to the free list.  q->lock held. */
static void
slot_finish_locked (struct vublk_queue *q, struct slot *s, int result,
                    struct finished_chunk *out)
{
  out->req = s->req;
  out->result = result;
  out->bounce = s->bounce;
  out->copy_out = s->copy_out;
  out->copy_out_skip = s->copy_out_skip;
  out->copy_out_len = s->copy_out_len;
  s->req = NULL;
  s->bounce = NULL;
  s->copy_out = NULL;
  s->next_free = q->free_head;
  q->free_head = s - q->slots;
  __atomic_fetch_sub (&q->inflight, 1, __ATOMIC_RELAXED);
}

struct slot *
queue_validate_used (struct vublk_queue *q, const struct vring_used_elem *e)
{
  unsigned idx = e->id;
  struct slot *s;
  uint32_t max_len;

  if (idx >= q->nslots) {
    set_error (EPROTO, "queue %u: used id %u out of range", q->index, e->id);
    return NULL;
  }
  s = &q->slots[idx];
  if (!s->req) {
    set_error (EPROTO, "queue %u: used id %u is not in flight", q->index,
               e->id);
    return NULL;
  }
  /* The used length is advisory for virtio-blk (Linux and QEMU ignore
   * it): qemu counts every byte it wrote (1 + data for a read, 1 for a
   * write), DPDK's example and SPDK report the data length of writes too.
   * Nothing is read past the chain because of it, so a disagreeing length
   * is a quirk to note, not a violation. */
  max_len = 1 + (s->device_writes ? s->data_len : 0);
  if (e->len != max_len && device_first_time (q->dev, ONCE_USED_LEN))
    device_log (q->dev, VUBLK_LOG_DEBUG, "queue %u: backend reports used "
                "length %u for a chain the device may write %u bytes of "
                "(tolerated: the length is advisory)", q->index, e->len,
                max_len);
  return s;
}

/* Harvests up to HARVEST_BATCH entries into out; returns the count. */
static unsigned
queue_harvest_locked (struct vublk_queue *q, struct finished_chunk *out)
{
  struct vring_used_elem used[HARVEST_BATCH];
  unsigned n = 0;
  bool violation;
  int got;

  if (q->broken)
    return 0;
  got = ring_harvest (&q->ring, used, HARVEST_BATCH, &violation);
  if (violation) {
    char what[200];

    snprintf (what, sizeof what, "%s", vublk_get_error ());
    set_error (EPROTO, "queue %u: %s", q->index, what);
    queue_protocol_violation (q);
  }
  for (int i = 0; i < got; i++) {
    struct slot *s = queue_validate_used (q, &used[i]);
    if (!s) {
      queue_protocol_violation (q);
      break;
    }
    slot_finish_locked (q, s, status_to_result (s->ctl->status), &out[n++]);
  }
  return n;
}

/* Completes harvested chunks: copies data out and frees bounce buffers
 * without the lock, then accounts every chunk under one lock hold.  A
 * request finishes when its phase has issued everything and nothing is in
 * flight, or moves on to its next phase (RMW write after the edge reads,
 * flush after FUA). */
static void
finish_chunks (struct vublk_queue *q, struct finished_chunk *f, unsigned n)
{
  struct request *finished = NULL, **tail = &finished;

  if (n == 0)
    return;
  for (unsigned i = 0; i < n; i++) {
    if (f[i].result == 0 && f[i].copy_out)
      memcpy (f[i].copy_out, (uint8_t *) f[i].bounce + f[i].copy_out_skip,
              f[i].copy_out_len);
    pool_free (&q->dev->mem.pool, f[i].bounce);
  }
  pthread_mutex_lock (&q->lock);
  for (unsigned i = 0; i < n; i++) {
    struct request *req = f[i].req;

    req->outstanding--;
    if (f[i].result && !req->error)
      req->error = f[i].result;
    if (req->outstanding == 0 && req->generated_all
        && request_phase_end_locked (q, req)) {
      req->next = NULL;
      *tail = req;
      tail = &req->next;
    }
  }
  pthread_mutex_unlock (&q->lock);
  run_finished (q, finished);
}

/* Completes requests parked on q->done_list by the pump. */
static void
finish_done_list (struct vublk_queue *q)
{
  struct request *list;

  pthread_mutex_lock (&q->lock);
  list = q->done_list;
  q->done_list = NULL;
  pthread_mutex_unlock (&q->lock);
  run_finished (q, list);
}

void
queue_disarm (struct vublk_queue *q)
{
  pthread_mutex_lock (&q->lock);
  ring_disarm (&q->ring);
  pthread_mutex_unlock (&q->lock);
}

bool
queue_arm_locked (struct vublk_queue *q)
{
  return !q->broken && ring_arm (&q->ring);
}

unsigned
queue_process (struct vublk_queue *q)
{
  struct finished_chunk f[HARVEST_BATCH];
  unsigned n;

  pthread_mutex_lock (&q->lock);
  n = queue_harvest_locked (q, f);
  if (n > 0)
    /* Refill the freed slots with work already waiting. */
    queue_pump_locked (q);
  pthread_mutex_unlock (&q->lock);
  finish_chunks (q, f, n);
  if (q->done_list)
    finish_done_list (q);
  return n;
}

void
queue_harvest_now (struct vublk_queue *q)
{
  while (queue_process (q) > 0)
    ;
}

static void *
queue_thread (void *arg)
{
  struct vublk_queue *q = arg;
  bool poll_mode = q->dev->opts.poll;

  while (!atomic_load (&q->stop)) {
    struct pollfd pfd[2] = {
      { .fd = q->call_fd, .events = POLLIN },
      { .fd = q->wake_fd, .events = POLLIN },
    };
    bool pending;
    int timeout;

    if (queue_process (q) > 0)
      continue;
    /* Read without the lock: a stale value only shortens or skips a spin. */
    if (poll_mode && __atomic_load_n (&q->inflight, __ATOMIC_RELAXED) > 0) {
      /* Adaptive polling: spin a short while after activity, on the
       * assumption that more completions follow; then sleep. */
      uint64_t until = now_ns () + POLL_SPIN_NS;
      bool got = false;
      queue_disarm (q);
      while (now_ns () < until && !atomic_load (&q->stop))
        if (!__atomic_load_n (&q->broken, __ATOMIC_RELAXED)
            && ring_has_used (&q->ring)) {
          got = true;
          break;
        }
      if (got)
        continue;
    }
    pthread_mutex_lock (&q->lock);
    pending = queue_arm_locked (q);
    /* Work that waits for pool memory needs a retry even if no completion
     * arrives on this queue. */
    timeout = q->pending_head ? 20 : -1;
    pthread_mutex_unlock (&q->lock);
    if (pending)
      continue;
    if (poll (pfd, 2, timeout) > 0) {
      if (pfd[0].revents)
        drain_eventfd (q->call_fd);
      if (pfd[1].revents)
        drain_eventfd (q->wake_fd);
    }
    if (timeout > 0) {
      pthread_mutex_lock (&q->lock);
      queue_pump_locked (q);
      pthread_mutex_unlock (&q->lock);
    }
  }
  return NULL;
}

int
queue_start_thread (struct vublk_queue *q)
{
  int err;

  atomic_store (&q->stop, false);
  err = pthread_create (&q->thread, NULL, queue_thread, q);
  if (err)
    return set_error_errno (err, "starting completion thread of queue %u",
                            q->index);
  q->thread_started = true;
  return 0;
}

void
queue_stop_thread (struct vublk_queue *q)
{
  if (!q->thread_started)
    return;
  atomic_store (&q->stop, true);
  queue_wake (q);
  pthread_join (q->thread, NULL);
  q->thread_started = false;
}

static int
compare_slot_seq (const void *a, const void *b)
{
  const struct slot *x = *(struct slot * const *) a;
  const struct slot *y = *(struct slot * const *) b;

  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

unsigned
queue_replay (struct vublk_queue *q)
{
  struct finished_chunk *failed;
  struct slot **order;
  unsigned n = 0, nfailed = 0;

  /* Entries the old backend completed before it went away are real
   * completions: take them first so they are not issued twice. */
  queue_harvest_now (q);

  /* Allocated at open would be tidier, but a reconnect is rare and these
   * are small; on ENOMEM we fail everything rather than lose order. */
  order = calloc (q->nslots, sizeof *order);
  failed = calloc (q->nslots, sizeof *failed);
  if (!order || !failed) {
    free (order);
    free (failed);
    queue_fail_all (q, -ENOMEM);
    return 0;
  }
  pthread_mutex_lock (&q->lock);
  ring_reset (&q->ring);
  __atomic_store_n (&q->broken, false, __ATOMIC_RELAXED);
  for (unsigned i = 0; i < q->nslots; i++)
    if (q->slots[i].req)
      order[n++] = &q->slots[i];
  qsort (order, n, sizeof *order, compare_slot_seq);
  for (unsigned i = 0; i < n; i++) {
    struct slot *s = order[i];
    if (s->abandon) {
      slot_finish_locked (q, s, -EIO, &failed[nfailed++]);
      continue;
    }
    s->submit_ns = now_coarse_ns ();
    queue_place_slot_locked (q, s);
  }
  /* Publish without notifying: the backend has no kick fd yet; the caller
   * kicks once the ring is set up again. */
  ring_publish_silently (&q->ring);
  pthread_mutex_unlock (&q->lock);
  finish_chunks (q, failed, nfailed);
  free (order);
  free (failed);
  return nfailed;
}

void
queue_kick (struct vublk_queue *q)
{
  uint64_t one = 1;

  pthread_mutex_lock (&q->lock);
  queue_pump_locked (q);
  pthread_mutex_unlock (&q->lock);
  if (write (q->kick_fd, &one, sizeof one) < 0) {
    /* saturated: already notified */
  }
}

void
queue_fail_all (struct vublk_queue *q, int err)
{
  struct finished_chunk *failed = calloc (q->nslots, sizeof *failed);
  unsigned n = 0;

  pthread_mutex_lock (&q->lock);
  for (unsigned i = 0; i < q->nslots && failed; i++)
    if (q->slots[i].req)
      slot_finish_locked (q, &q->slots[i], err, &failed[n++]);
  fail_pending_locked (q, err);
  pthread_mutex_unlock (&q->lock);
  finish_chunks (q, failed, n);
  free (failed);
  finish_done_list (q);
}

void
queue_note_violation (struct vublk_queue *q)
{
  pthread_mutex_lock (&q->lock);
  for (unsigned i = 0; i < q->nslots; i++) {
    struct slot *s = &q->slots[i];
    /* A request in flight across two protocol violations fails rather
     * than meeting the same fault forever. */
    if (s->req && ++s->violations >= 2)
      s->abandon = true;
  }
  pthread_mutex_unlock (&q->lock);
}

bool
queue_scan_timeouts (struct vublk_queue *q, uint64_t deadline_ns)
{
  bool hung = false;

  pthread_mutex_lock (&q->lock);
  for (unsigned i = 0; i < q->nslots; i++) {
    struct slot *s = &q->slots[i];
    if (s->req && s->submit_ns < deadline_ns) {
      hung = true;
      /* A request that hangs again after a reconnect is failed rather
       * than retried forever. */
      if (++s->timeouts >= 2)
        s->abandon = true;
    }
  }
  pthread_mutex_unlock (&q->lock);
  return hung;
}
