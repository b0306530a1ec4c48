/* replay.c — a queue across a reconnect: what the old backend completed
 * is taken first, every slot still in flight is placed again on a fresh
 * ring in submission order, and requests that keep meeting the same fault
 * (a second request timeout, a second protocol violation, a third lost
 * connection) fail with EIO instead of being replayed forever; on a
 * backend that came back read-only, writes fail with EROFS.  Also
 * failing everything once the reconnect window has passed.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

static int
compare_slot_seq (const void *a, const void *b)
{
  const struct slot *x = *(struct slot * const *) a;
  const struct slot *y = *(struct slot * const *) b;

  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

unsigned
queue_replay (struct vublk_queue *q, bool backend_readonly)
{
  /* Allocated with the queue: recovery must not fail for memory. */
  struct finished_chunk *failed = q->recovery_chunks;
  struct slot **order = q->recovery_order;
  unsigned n = 0, nfinished = 0, nfailed = 0;

  /* Entries the old backend completed before it went away are real
   * completions: take them first so they are not issued twice. */
  queue_harvest_now (q);
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
      queue_slot_finish_locked (q, s, -EIO, &failed[nfinished++]);
      nfailed++;
      continue;
    }
    if (backend_readonly && op_desc (s->req->io.op)->modifies) {
      queue_slot_finish_locked (q, s, -EROFS, &failed[nfinished++]);
      continue;
    }
    s->submit_ns = now_coarse_ns ();
    queue_place_slot_locked (q, s);
  }
  /* Publish without notifying: the backend has no kick fd yet; the caller
   * kicks once the ring is set up again. */
  ring_publish_silently (&q->ring);
  pthread_mutex_unlock (&q->lock);
  queue_finish_chunks (q, failed, nfinished);
  return nfailed;
}

void
queue_fail_all (struct vublk_queue *q, int err)
{
  struct finished_chunk *failed = q->recovery_chunks;
  unsigned n = 0;

  pthread_mutex_lock (&q->lock);
  for (unsigned i = 0; i < q->nslots; i++)
    if (q->slots[i].req)
      queue_slot_finish_locked (q, &q->slots[i], err, &failed[n++]);
  queue_fail_pending_locked (q, err);
  pthread_mutex_unlock (&q->lock);
  queue_finish_chunks (q, failed, n);
  queue_finish_done_list (q);
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

unsigned
queue_note_drop (struct vublk_queue *q)
{
  unsigned abandoned = 0;

  pthread_mutex_lock (&q->lock);
  for (unsigned i = 0; i < q->nslots; i++) {
    struct slot *s = &q->slots[i];

    if (s->req && !s->abandon && ++s->drops >= MAX_DROPS_IN_FLIGHT) {
      s->abandon = true;
      abandoned++;
    }
  }
  pthread_mutex_unlock (&q->lock);
  return abandoned;
}

bool
queue_scan_timeouts (struct vublk_queue *q, uint64_t deadline_ns)
{
  bool hung = false;

  pthread_mutex_lock (&q->lock);
  /* Answers nobody has harvested yet are not a hung backend: a driving
   * thread busy elsewhere will take them, and a reconnect would drop a
   * backend that did its job.  Whoever harvests is woken for them, in
   * case the backend answered without signalling (a lost interrupt) and
   * the completion thread or the owner sleeps on the call eventfd. */
  if (!q->broken && ring_has_used (&q->ring)) {
    pthread_mutex_unlock (&q->lock);
    queue_wake_harvester (q);
    return false;
  }
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
