/* driven.c — run to completion: a thread claims a queue and drives it
 * itself (libblkio's blkioq_do_io is the model).  It submits, harvests
 * the used ring for a spin budget, then sleeps on that queue's call
 * eventfd; every callback of the queue runs on it, and no completion
 * thread touches the queue meanwhile (that hop costs two thread wake-ups
 * per request).  Undriven queues keep their completion threads.
 *
 * The control thread keeps working for driven queues: what it finishes
 * (requests failed after the reconnect window, replayed ones given up)
 * is handed over to the owner (q->handoff) and completed in its next
 * vublk_tq_process, never behind its back.  A handle keeps the device's
 * memory alive until its thread closes it, even across vublk_close.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

struct vublk_tq {
  struct vublk *dev;
  struct vublk_queue *q;
  /* An edge-triggered epoll set holding only the queue's call eventfd
   * (call_wait), or -1 to sleep in poll instead. */
  int call_epoll_fd;
  /* The pace of completions, seen by the owner only: when the last ones
   * were harvested and the smoothed time between two of them. */
  uint64_t last_completion_ns;
  uint64_t completion_gap_ns;
};

/* The handle of the queue this thread drives (one at a time). */
static HOT_THREAD_LOCAL struct vublk_tq *tls_tq;

static struct vublk_tq *claim (struct vublk *dev, bool keep_shared);

/* Threads whose synchronous calls claimed a queue (thread_queues) let it
 * go when they exit. */
static pthread_key_t exit_key;
static bool exit_key_made;     /* set once, under exit_key_once */
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

static void
release_at_exit (void *tq)
{
  vublk_tq_close (tq);
}

static void
make_exit_key (void)
{
  exit_key_made = pthread_key_create (&exit_key, release_at_exit) == 0;
}

/* True if a synchronous call claimed tq (thread_queues), not
 * vublk_tq_open: the queue says so while tq holds it. */
static bool
for_sync_calls (const struct vublk_tq *tq)
{
  return atomic_load (&tq->q->sync_claimed);
}

void
driven_release_own (struct vublk *dev)
{
  if (tls_tq && tls_tq->dev == dev && for_sync_calls (tls_tq))
    vublk_tq_close (tls_tq);
}

/* A synchronous call that found no idle queue to claim tries again after
 * this long, not at every call (each try locks every queue). */
#define CLAIM_RETRY_NS 1000000ull

struct vublk_tq *
driven_handle_of_thread (struct vublk *dev)
{
  /* The device (by serial: a new one may have a closed one's address)
   * whose queues this thread could not claim: for good (none to spare),
   * or until claim_retry_ns (none idle). */
  static HOT_THREAD_LOCAL uint64_t claim_failed, claim_waits, claim_retry_ns;
  struct vublk_tq *tq;

  if (tls_tq) {
    if (tls_tq->dev == dev)
      return tls_tq;
    /* A handle a synchronous call claimed on a device closed since (by
     * another thread) goes now: it held that device's memory. */
    if (!for_sync_calls (tls_tq) || !device_is_gone (tls_tq->dev))
      return NULL;
    vublk_tq_close (tls_tq);
  }
  if (!dev->opts.thread_queues || claim_failed == dev->serial
      || (claim_waits == dev->serial && now_coarse_ns () < claim_retry_ns))
    return NULL;
  pthread_once (&exit_key_once, make_exit_key);
  /* One queue stays shared: threads that never process must not wait
   * for a thread that claimed a queue and went on to do other things. */
  if (!exit_key_made || !(tq = claim (dev, true))) {
    if (exit_key_made && vublk_get_errno () == EAGAIN) {
      claim_waits = dev->serial;
      claim_retry_ns = now_coarse_ns () + CLAIM_RETRY_NS;
    }
    else
      claim_failed = dev->serial; /* the shared queues serve this thread */
    return NULL;
  }
  atomic_store (&tq->q->sync_claimed, true);
  pthread_setspecific (exit_key, tq);
  return tq;
}

/* Takes an undriven queue of dev for the calling thread; with
 * keep_shared, only while another undriven queue is left for the threads
 * that do not drive.  Counting and taking are one step under claim_lock:
 * two threads that counted two undriven queues at once would otherwise
 * take both, and the threads after them would send their requests to a
 * queue whose owner may never harvest it.  Returns the queue or NULL. */
static struct vublk_queue *
take_queue (struct vublk *dev, bool keep_shared)
{
  struct vublk_queue *taken = NULL;
  unsigned undriven = 0;

  pthread_mutex_lock (&dev->claim_lock);
  for (unsigned i = 0; i < dev->nqueues; i++)
    undriven += !atomic_load (&dev->queues[i].driven);
  if (keep_shared && undriven < 2)
    set_error (EBUSY, "%s: no queue to spare for this thread",
               dev->socket_path);
  else {
    /* An idle queue first: requests other threads have in flight on a
     * queue would wait for its new owner to harvest them.  A synchronous
     * call's claim (keep_shared) takes only an idle one, as its owner
     * harvests only while inside a call; vublk_tq_open's owner processes
     * its queue and may take a busy one. */
    for (int pass = 0; pass < (keep_shared ? 1 : 2) && !taken; pass++)
      for (unsigned i = 0; i < dev->nqueues && !taken; i++) {
        struct vublk_queue *q = &dev->queues[i];
        bool expected = false;

        if (atomic_load (&q->driven) || (pass == 0 && queue_has_work (q)))
          continue;
        if (atomic_compare_exchange_strong (&q->driven, &expected, true))
          taken = q;
      }
    if (!taken && keep_shared)
      set_error (EAGAIN, "%s: no idle queue to spare for this thread now",
                 dev->socket_path);
    else if (!taken)
      set_error (EBUSY, "%s: all %u queues are driven by other threads",
                 dev->socket_path, dev->nqueues);
  }
  pthread_mutex_unlock (&dev->claim_lock);
  return taken;
}

/* Claims a queue for the calling thread (see take_queue). */
static struct vublk_tq *
claim (struct vublk *dev, bool keep_shared)
{
  struct vublk_tq *tq;
  struct vublk_queue *q;

  if (tls_tq) {
    set_error (EBUSY, "%s: this thread already drives queue %u",
               dev->socket_path, tls_tq->q->index);
    return NULL;
  }
  if (!(tq = calloc (1, sizeof *tq))) {
    set_error (ENOMEM, "allocating a queue handle");
    return NULL;
  }
  if (!(q = take_queue (dev, keep_shared))) {
    free (tq);
    return NULL;
  }
  tq->dev = dev;
  tq->q = q;
  tq->call_epoll_fd = call_wait_open (q->call_fd);
  device_ref (dev);
  tls_tq = tq;
  thread_set_driven_queue (q);
  device_log (dev, VUBLK_LOG_DEBUG, "a thread drives queue %u", q->index);
  /* Wait until the completion thread is off the ring: it could
   * otherwise drain a call signal meant for us, or disarm the ring
   * under us.  It is woken for this at once. */
  queue_wake (q);
  for (int ms = 0; q->thread_started && !atomic_load (&q->parked)
                   && ms < 5000; ms++)
    usleep (1000);
  return tq;
}

void
driven_leave_if_shared (struct vublk_tq *tq)
{
  /* With its own request done, whatever else is on a queue a synchronous
   * call claimed belongs to other threads (placed as it claimed the
   * queue).  Nobody else harvests a driven queue, and this thread may not
   * call again for a long time; nor should it wait for them (they may
   * be a stream whose callbacks resubmit).  It lets the queue go, to its
   * completion thread; the next call claims an idle one.  (A
   * vublk_tq_open owner processes its queue itself.) */
  if (for_sync_calls (tq) && queue_has_work (tq->q))
    vublk_tq_close (tq);
}

struct vublk_tq *
vublk_tq_open (struct vublk *dev)
{
  return claim (dev, false);
}

void
vublk_tq_close (struct vublk_tq *tq)
{
  struct vublk *dev;

  if (!tq)
    return;
  dev = tq->dev;
  /* The queue is let go under its lock, so nothing is handed over
   * after this (run_finished decides under the same lock); what was
   * handed over before runs here, on the owner, and then the completion
   * thread takes the queue back. */
  if (!device_is_gone (dev)) {
    atomic_store (&tq->q->sync_claimed, false);
    pthread_mutex_lock (&tq->q->lock);
    atomic_store (&tq->q->driven, false);
    pthread_mutex_unlock (&tq->q->lock);
    queue_run_handoff (tq->q);
    queue_wake (tq->q);
  }
  if (tls_tq == tq) {
    request_cache_drop (tq->q);
    tls_tq = NULL;
    thread_set_driven_queue (NULL);
    /* Only a key this library made: 0 may be anyone's (ThreadSanitizer's
     * own lost its thread-exit hook to such a call). */
    if (exit_key_made)
      pthread_setspecific (exit_key, NULL);
  }
  if (tq->call_epoll_fd >= 0)
    close (tq->call_epoll_fd);
  free (tq);
  device_unref (dev);
}

int
vublk_tq_fd (struct vublk_tq *tq)
{
  return tq->q->call_fd;
}

int
vublk_tq_arm (struct vublk_tq *tq)
{
  struct vublk_queue *q = tq->q;
  bool pending;

  if (device_is_gone (tq->dev))
    return set_error (ESHUTDOWN, "%s: device closed",
                      vublk_get_socket_path (tq->dev));
  /* Empty the eventfd first, then ask for the next completion and look
   * at the ring again: one landing in between is seen here or signalled
   * later, never lost. */
  eventfd_drain (q->call_fd);
  pthread_mutex_lock (&q->lock);
  pending = queue_arm_locked (q) || q->handoff || q->done_list;
  pthread_mutex_unlock (&q->lock);
  return pending;
}

int
vublk_tq_submit (struct vublk_tq *tq, const struct vublk_io *io)
{
  if (device_is_gone (tq->dev))
    return set_error (ESHUTDOWN, "%s: device closed",
                      vublk_get_socket_path (tq->dev));
  return aio_submit_checked (tq->dev, tq->q, io);
}

/* Harvests what is there, runs its callbacks and what was handed over.
 * Returns how many chunks and requests completed. */
static unsigned
process_once (struct vublk_queue *q)
{
  return queue_process (q, PROCESS_BUDGET) + queue_run_handoff (q);
}

/* Notes that n completions were harvested at now: a smoothed average
 * of the time between two completions (a quarter weight for the newest
 * sample). */
static void
note_completions (struct vublk_tq *tq, unsigned n, uint64_t now)
{
  if (tq->last_completion_ns) {
    uint64_t gap = (now - tq->last_completion_ns) / n;
    tq->completion_gap_ns = (3 * tq->completion_gap_ns + gap) / 4;
  }
  tq->last_completion_ns = now;
}

/* True if a thread may poll for completions without taking a core from
 * a busy backend: with the poll option (busy polling asked for), or
 * while at most max_inflight requests are in flight on the device. */
static bool
low_depth_or_poll (const struct vublk *dev, unsigned max_inflight)
{
  return dev->opts.poll || atomic_load (&dev->outstanding) <= max_inflight;
}

/* True if requests are in flight on the device but none on tq's queue:
 * the completion threads answer those, and need the CPU. */
static bool
only_other_queues_busy (const struct vublk_tq *tq)
{
  return atomic_load (&tq->dev->outstanding) > 0
         && __atomic_load_n (&tq->q->inflight, __ATOMIC_RELAXED) == 0;
}

/* How long this thread may poll its ring before sleeping:
 * - always with the poll option (busy polling asked for);
 * - spin_us while at most two requests are in flight on the whole
 *   device: with more, every polling thread takes a core from a busy
 *   backend (16 nbdkit workers spinning 30 us each halved the plugin's
 *   4k rate);
 * - GAP_SPIN_NS while this queue's completions come less than half that
 *   apart: the next one is due sooner than a sleeping thread wakes
 *   (tens of microseconds on a virtual machine).  Sleeping then made
 *   this thread and the backend take turns instead of overlapping:
 *   bench/core, null-co, 4k QD32 on the call eventfd went from 1.16M to
 *   2.2-2.3M IOPS with 0.4 us of client CPU per request.  Slow
 *   completions (large transfers, a slow disk) make the gap long and
 *   the spin stops by itself. */
static uint64_t
spin_budget_ns (const struct vublk_tq *tq, uint64_t now)
{
  const struct vublk *dev = tq->dev;

  if (dev->opts.poll)
    return POLL_SPIN_NS;
  if (dev->opts.spin_us && low_depth_or_poll (dev, SPIN_MAX_INFLIGHT))
    return (uint64_t) dev->opts.spin_us * 1000;
  if (tq->completion_gap_ns < GAP_SPIN_NS / 2
      && now - tq->last_completion_ns < GAP_SPIN_NS)
    return GAP_SPIN_NS;
  return 0;
}

/* True if the resubmissions of this pass over the ring are announced
 * in groups (process_pass) rather than one by one: only when busy
 * polling (the poll option) with at least POLL_BATCH_MIN_INFLIGHT
 * requests in flight on this queue, so the backend has plenty left
 * while a group runs.  bench/core's cell, qemu-storage-daemon null-co,
 * 4k reads polling, interleaved in rotated order: at QD32 2.28M IOPS
 * one by one, 2.48M batched (the minimal client 2.33M).  From 8 in
 * flight it cost QD8 13% (the backend ran dry while the pass ran;
 * measured with whole passes, before the groups of process_pass); at
 * QD1 a request waits for nothing but its publish.  Sleeping on the call
 * eventfd the batch broke the adaptive spin's rhythm: 1.50M to 0.65M at
 * QD32. */
static bool
batch_this_pass (const struct vublk_tq *tq)
{
  return tq->dev->opts.poll
         && __atomic_load_n (&tq->q->inflight, __ATOMIC_RELAXED)
            >= POLL_BATCH_MIN_INFLIGHT;
}

/* One pass over tq's ring: harvests up to PROCESS_BUDGET completions,
 * runs their callbacks and what was handed over.  When batch_this_pass,
 * what the callbacks resubmit is announced after every
 * POLL_BATCH_REQUESTS completions (one publish and at most one kick,
 * unless a group's data passes the plug's byte bound), not once at the
 * end of the pass: a whole pass left the backend idle for as long as it
 * ran.  A caller's own plug is left alone (announced at its unplug).
 * The groups count requests that finished without a chunk too, and a
 * group that ends on exactly the bound costs one empty look more;
 * handed-over callbacks run after the groups, unplugged.  Returns how
 * many chunks and requests completed. */
static unsigned
process_pass (struct vublk_tq *tq)
{
  struct vublk_queue *q = tq->q;
  unsigned got = 0, part;

  if (!batch_this_pass (tq))
    return process_once (q);
  do {
    bool plugged = queue_plug_unless_plugged (tq->dev);

    part = queue_process (q, POLL_BATCH_REQUESTS);
    if (plugged)
      vublk_aio_unplug (tq->dev);
    got += part;
  } while (part >= POLL_BATCH_REQUESTS && got < PROCESS_BUDGET);
  return got + queue_run_handoff (q);
}

int
vublk_tq_spin (struct vublk_tq *tq, uint64_t ns, int fd)
{
  struct vublk_queue *q = tq->q;
  uint64_t until = now_ns () + ns;

  if (device_is_gone (tq->dev))
    return set_error (ESHUTDOWN, "%s: device closed",
                      vublk_get_socket_path (tq->dev));
  if (!low_depth_or_poll (tq->dev, LOOP_SPIN_MAX_INFLIGHT)
      || (!tq->dev->opts.poll && only_other_queues_busy (tq)))
    return 0;
  queue_disarm (q);
  do {
    if (process_once (q) > 0 || fd_readable (fd))
      return 1;
  } while (now_ns () < until);
  return 0;
}

int
vublk_tq_process (struct vublk_tq *tq, unsigned min, int64_t timeout_ns)
{
  struct vublk_queue *q = tq->q;
  uint64_t start = now_ns ();
  unsigned done = 0;

  for (;;) {
    unsigned got;
    uint64_t now;
    int wait_ms;
    bool pending, retry;

    /* vublk_close stops the rings: what is in flight then never
     * completes, and it wakes this thread to say so. */
    if (device_is_gone (tq->dev))
      return done ? (int) done
                  : set_error (ESHUTDOWN, "%s: device closed",
                               vublk_get_socket_path (tq->dev));
    got = process_pass (tq);
    now = now_ns ();
    if (got)
      note_completions (tq, got, now);
    done += got;
    if (done >= min)
      return done;
    if (timeout_ns >= 0 && now - start >= (uint64_t) timeout_ns)
      return done;
    /* Poll the used ring for the spin budget, notifications off. */
    uint64_t spin = spin_budget_ns (tq, now);
    if (spin && __atomic_load_n (&q->inflight, __ATOMIC_RELAXED) > 0
        && queue_poll_used (q, now + spin, NULL))
      continue;
    pthread_mutex_lock (&q->lock);
    pending = queue_arm_locked (q) || q->handoff || q->done_list;
    /* Requests waiting for pool memory need a retry even if nothing
     * completes; a reconnect may be resetting the ring: look again
     * soon rather than sleep on a call fd the backend no longer has. */
    retry = q->pending_head || atomic_load (&tq->dev->state) != DEV_CONNECTED;
    wait_ms = retry ? 20 : -1;
    pthread_mutex_unlock (&q->lock);
    if (pending)
      continue;
    if (timeout_ns >= 0) {
      /* Time left, in whole milliseconds rounded up, without overflow
       * for any timeout (now - start < timeout_ns, checked above). */
      uint64_t left_ns = (uint64_t) timeout_ns - (now_ns () - start);
      uint64_t left_ms = left_ns > (uint64_t) timeout_ns ? 0
                         : left_ns / 1000000 + 1;

      if (left_ms > INT_MAX)
        left_ms = INT_MAX;
      if (wait_ms < 0 || (int) left_ms < wait_ms)
        wait_ms = (int) left_ms;
    }
    call_wait (tq->call_epoll_fd, tq->q->call_fd, wait_ms);
    if (retry) {
      pthread_mutex_lock (&q->lock);
      queue_pump_locked (q);
      pthread_mutex_unlock (&q->lock);
    }
  }
}
