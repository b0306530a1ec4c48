/* completion.c — one virtqueue's completion side: harvesting the ring
 * (ids checked against the slots in flight, the used length only noted),
 * copying bounced data out and running the callbacks without the lock,
 * moving multi-phase requests on, and the completion thread that sleeps
 * on the call eventfd (or polls adaptively) for callers that do not
 * drive the queue themselves.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Runs request_finish (callbacks) for a list of finished requests, then
 * issues what they submitted in one batch. */
static void
run_finished (struct vublk_queue *q, struct request *list)
{
  struct vublk_queue *outer;

  /* A driven queue's callbacks run on its owner only: hand them over.
   * Whether it is still driven is decided under the lock, which
   * vublk_tq_close takes to let go of the queue: a list handed over
   * after the owner's last look would never run. */
  if (list && atomic_load (&q->driven) && !thread_drives (q)) {
    struct request *last = list;
    bool handed = false;

    while (last->next)
      last = last->next;
    pthread_mutex_lock (&q->lock);
    if (atomic_load (&q->driven)) {
      last->next = q->handoff;
      __atomic_store_n (&q->handoff, list, __ATOMIC_RELAXED);
      handed = true;
    }
    pthread_mutex_unlock (&q->lock);
    if (handed) {
      eventfd_signal (q->call_fd);
      list = NULL;
    }
  }
  outer = queue_begin_callbacks (q);

  while (list) {
    struct request *next = list->next;
    struct request *granted = request_finish (list);

    /* Writes that waited for this one's block range go now (deferred
     * like any submission from a callback when they use this queue). */
    while (granted) {
      struct request *g = granted;
      granted = g->next;
      queue_enqueue (g->q, g);
    }
    list = next;
  }
  queue_end_callbacks (q, outer);
}

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
  eventfd_signal (q->dev->ctl_wake_fd);
}

void
queue_slot_finish_locked (struct vublk_queue *q, struct slot *s, int result,
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
  /* Written under q->lock only; atomic for the lock-free readers. */
  __atomic_store_n (&q->inflight, q->inflight - 1, __ATOMIC_RELAXED);
}

struct slot *
queue_validate_used (struct vublk_queue *q, const struct vring_used_elem *e)
{
  unsigned idx = e->id;
  struct slot *s;
  uint32_t max_len;

  if (idx >= q->nslots) {
    set_error (EPROTO, "queue %u: used id %u out of range", q->index,
               ring_wire_id (&q->ring, e->id));
    return NULL;
  }
  s = &q->slots[idx];
  if (!s->req) {
    set_error (EPROTO, "queue %u: used id %u is not in flight", q->index,
               ring_wire_id (&q->ring, e->id));
    return NULL;
  }
  /* In flight again, but not as that entry says: it was published before
   * the slot's chain was placed (the device gave the id twice, and the
   * slot was refilled between the two). */
  if (ring_published_before (&q->ring, s->placed_at_seen)) {
    set_error (EPROTO, "queue %u: used id %u appears twice (its second "
               "entry came before the id was given out again)", q->index,
               ring_wire_id (&q->ring, e->id));
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

/* Harvests the next used entry, if any, into *out; returns 1 or 0.  A
 * protocol violation marks the queue broken and returns 0. */
static unsigned
queue_harvest_one_locked (struct vublk_queue *q, struct finished_chunk *out)
{
  struct vring_used_elem used[1];
  unsigned n = 0;
  bool violation;
  int got;

  if (q->broken)
    return 0;
  got = ring_harvest (&q->ring, used, 1, &violation);
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
    queue_slot_finish_locked (q, s, status_to_result (s->ctl->status), &out[n++]);
  }
  return n;
}

/* Counts harvested chunks against their requests (q->lock held) and
 * appends each request that finished to the list whose end is *tail. */
static void
account_chunks_locked (struct vublk_queue *q, const struct finished_chunk *f,
                       unsigned n, struct request ***tail)
{
  for (unsigned i = 0; i < n; i++) {
    struct request *req = f[i].req;

    req->outstanding--;
    if (f[i].result && !req->error)
      req->error = f[i].result;
    if (req->outstanding == 0 && req->generated_all
        && queue_phase_end_locked (q, req)) {
      req->next = NULL;
      **tail = req;
      *tail = &req->next;
    }
  }
}

/* Completes harvested chunks: copies data out and frees bounce buffers
 * without the lock, then accounts every chunk under one lock hold.  A
 * request finishes when its phase has issued everything and nothing is in
 * flight, or moves on to its next phase (RMW write after the edge reads,
 * flush after FUA). */
void
queue_finish_chunks (struct vublk_queue *q, struct finished_chunk *f, unsigned n)
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
  account_chunks_locked (q, f, n, &tail);
  pthread_mutex_unlock (&q->lock);
  run_finished (q, finished);
}

/* Takes the list at *head (a list of q's, written under q->lock and
 * peeked at without it), completes it here and returns its length. */
static unsigned
take_and_finish (struct vublk_queue *q, struct request **head)
{
  struct request *list;
  unsigned n = 0;

  pthread_mutex_lock (&q->lock);
  list = *head;
  __atomic_store_n (head, NULL, __ATOMIC_RELAXED);
  pthread_mutex_unlock (&q->lock);
  for (struct request *r = list; r; r = r->next)
    n++;
  run_finished (q, list);
  return n;
}

unsigned
queue_finish_done_list (struct vublk_queue *q)
{
  return take_and_finish (q, &q->done_list);
}

/* Asks the CPU to fetch what the next completion is read from: the used
 * entry, and the status of the requests placed last (the ones in flight
 * at low depth).  The device writes those lines just before it
 * publishes; fetched while polling they are there when the used index
 * moves, two cache misses fewer between a completion and the request its
 * callback submits.  A hint only. */
static void
prefetch_completion (const struct vublk_queue *q)
{
  ring_prefetch_used (&q->ring);
  for (unsigned i = 0; i < ARRAY_SIZE (q->recent); i++) {
    const struct slot *s = __atomic_load_n (&q->recent[i], __ATOMIC_RELAXED);

    if (s)
      __builtin_prefetch (&s->ctl->status, 0, 3);
  }
}

bool
queue_poll_used (struct vublk_queue *q, uint64_t until,
                 const atomic_bool *stop)
{
  queue_disarm (q);
  while (now_ns () < until && !(stop && atomic_load (stop))) {
    if (!__atomic_load_n (&q->broken, __ATOMIC_RELAXED)
        && ring_has_used (&q->ring))
      return true;
    prefetch_completion (q);
  }
  return false;
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

/* Completions are taken one at a time, each finished (its callback run
 * and what that submitted published, unless the thread is plugged: see
 * driven.c's batch_this_pass) before the next is harvested.  A
 * backend still working through the ring then finds the resubmission
 * without a kick and never runs dry.  Harvesting a batch and publishing
 * its resubmissions together made this thread and the backend take turns
 * instead of overlapping: the backend idled while the batch's callbacks
 * ran, then this thread slept while the backend served it.  bench/core,
 * qemu-storage-daemon null-co, 4k reads at QD32 sleeping on the call
 * eventfd: 0.49M IOPS with batches of 64, 1.9-2.3M one at a time. */
unsigned
queue_process (struct vublk_queue *q, unsigned max)
{
  unsigned n = 0;

  while (n < max) {
    struct finished_chunk f;
    struct request *finished = NULL, **tail = &finished;
    unsigned got;

    pthread_mutex_lock (&q->lock);
    got = queue_harvest_one_locked (q, &f);
    if (got) {
      /* Refill the freed slot with work already waiting. */
      queue_pump_locked (q);
      /* With no bounce buffer to copy from or free (the caller's buffer
       * was shared memory), account it in the same lock hold. */
      if (!f.bounce)
        account_chunks_locked (q, &f, 1, &tail);
    }
    pthread_mutex_unlock (&q->lock);
    if (!got)
      break;
    if (f.bounce)
      queue_finish_chunks (q, &f, 1);
    else
      run_finished (q, finished);
    n++;
  }
  /* A peek without the lock: a request parked just after it is not
   * lost, as parking it wakes this queue's completion thread. */
  if (__atomic_load_n (&q->done_list, __ATOMIC_RELAXED))
    n += queue_finish_done_list (q);
  return n;
}

unsigned
queue_run_handoff (struct vublk_queue *q)
{
  if (!__atomic_load_n (&q->handoff, __ATOMIC_RELAXED))
    return 0;
  return take_and_finish (q, &q->handoff);
}

void
queue_harvest_now (struct vublk_queue *q)
{
  while (queue_process (q, PROCESS_BUDGET) > 0)
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

    if (atomic_load (&q->driven)) {
      /* Its owner harvests; wake only to stop or to take it back.  A
       * call signal this thread drained on its way here was the
       * owner's: pass it on, then tell the owner the queue is its. */
      struct pollfd wake = { .fd = q->wake_fd, .events = POLLIN };

      eventfd_signal (q->call_fd);
      atomic_store (&q->parked, true);
      while (atomic_load (&q->driven) && !atomic_load (&q->stop))
        if (poll (&wake, 1, -1) > 0)
          eventfd_drain (q->wake_fd);
      atomic_store (&q->parked, false);
      continue;
    }
    if (queue_process (q, PROCESS_BUDGET) > 0)
      continue;
    /* Read without the lock: a stale value only shortens or skips a spin. */
    if (poll_mode && __atomic_load_n (&q->inflight, __ATOMIC_RELAXED) > 0) {
      /* Adaptive polling: spin a short while after activity, on the
       * assumption that more completions follow; then sleep. */
      if (queue_poll_used (q, now_ns () + POLL_SPIN_NS, &q->stop))
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
        eventfd_drain (q->call_fd);
      if (pfd[1].revents)
        eventfd_drain (q->wake_fd);
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
  err = library_thread_start (&q->thread, queue_thread, q);
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

