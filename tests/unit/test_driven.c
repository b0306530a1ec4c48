/* test_driven.c — driven.c against an in-process device (fake_peer.c):
 * how a thread that drives its queue announces what its callbacks
 * resubmit.  The fake device never asks to go unnotified, so every
 * publish of the avail ring is one kick, and the kick eventfd's counter
 * says how many publishes a pass made.  Also how a driving thread
 * sleeps: woken by a signal on the call eventfd, never spinning on one
 * it already saw. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "fake_peer.h"

#define KiB 1024u
#define DEPTH 32u

/* Requests that resubmit themselves from their callback while the
 * shared budget lasts, as vublk bench's jobs do. */
struct resubmitter {
  struct vublk_tq *tq;
  unsigned *budget;
  unsigned completions;
  int last_result;
  uint8_t buf[512];
};

/* The device every case runs on: split ring with indirect descriptors,
 * 64 slots, so DEPTH requests fit at once. */
static const struct fake_params driven_params = {
  .layout = LAYOUT_SPLIT_INDIRECT, .queue_size = 64, .blk_size = 512,
  .max_transfer = 8 * KiB, .disk_bytes = 1024 * KiB,
  .pool_size = 1024 * KiB, .flush = true,
};

static void resubmit_cb (void *opaque, int result);

/* Submits r's read on its driven queue; asserts it is accepted. */
static void
submit_read (struct resubmitter *r)
{
  struct vublk_io io = {
    .op = VUBLK_OP_READ, .offset = 0, .buf = r->buf, .len = sizeof r->buf,
    .cb = resubmit_cb, .opaque = r,
  };

  assert_int_equal (vublk_tq_submit (r->tq, &io), 0);
}

static void
resubmit_cb (void *opaque, int result)
{
  struct resubmitter *r = opaque;

  r->completions++;
  r->last_result = result;
  if (*r->budget == 0)
    return;
  --*r->budget;
  submit_read (r);
}

/* Runs one pass of vublk_tq_process over DEPTH completions whose
 * callbacks all resubmit, with the poll option on or off, and returns
 * the kicks that pass sent.  Everything is served and freed after. */
static uint64_t
kicks_of_one_pass (bool poll)
{
  struct fake_env e = fake_env_new (&driven_params);
  struct resubmitter *r = calloc (DEPTH, sizeof *r);
  unsigned budget = DEPTH;
  struct vublk_tq *tq;
  uint64_t sent;

  assert_non_null (r);
  e.dev->opts.poll = poll;
  tq = vublk_tq_open (e.dev);
  assert_non_null (tq);
  for (unsigned i = 0; i < DEPTH; i++) {
    r[i].tq = tq;
    r[i].budget = &budget;
    submit_read (&r[i]);
  }
  assert_int_equal (fake_peer_take (e.peer), DEPTH);
  for (unsigned i = 0; i < DEPTH; i++)
    fake_peer_complete (e.peer, 0);
  fake_peer_publish (e.peer);
  fake_kicks (e.q);                          /* the first submissions' */

  assert_int_equal (vublk_tq_process (tq, DEPTH, 0), DEPTH);
  sent = fake_kicks (e.q);
  assert_int_equal (budget, 0);
  assert_int_equal (fake_peer_take (e.peer), DEPTH);   /* all announced */

  fake_peer_run (e.peer);
  for (unsigned i = 0; i < DEPTH; i++) {
    assert_int_equal (r[i].completions, 2);
    assert_int_equal (r[i].last_result, 0);
  }
  vublk_tq_close (tq);
  free (r);
  fake_env_free (&e);
  return sent;
}

/* Busy polling with DEPTH in flight, a pass's resubmissions are
 * announced every POLL_BATCH_REQUESTS completions: not once at the end
 * of the pass (the backend would idle while it runs), not one by one
 * (a publish and a kick each). */
static void
test_poll_announces_in_groups (void **state)
{
  (void) state;
  assert_int_equal (kicks_of_one_pass (true), DEPTH / POLL_BATCH_REQUESTS);
}

/* Sleeping on the call eventfd, each resubmission goes out at once. */
static void
test_without_poll_one_by_one (void **state)
{
  (void) state;
  assert_int_equal (kicks_of_one_pass (false), DEPTH);
}

static uint64_t
clock_ns (clockid_t clock)
{
  struct timespec ts;

  clock_gettime (clock, &ts);
  return (uint64_t) ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* The device side of test_sleep_wakes_on_signal: answers the one taken
 * chain 50 ms from now and signals, as a backend does. */
static void *
answer_later (void *arg)
{
  struct fake_env *e = arg;

  usleep (50 * 1000);
  fake_peer_complete (e->peer, 0);
  fake_peer_publish (e->peer);
  eventfd_signal (e->q->call_fd);
  return NULL;
}

/* A driving thread with nothing to harvest sleeps until the backend
 * signals (not until its timeout), and a signal it has already seen
 * does not keep it awake: the eventfd is never emptied on this path. */
static void
test_sleep_wakes_on_signal (void **state)
{
  struct fake_env e = fake_env_new (&driven_params);
  unsigned budget = 0;
  struct resubmitter r = { .budget = &budget };
  struct vublk_tq *tq;
  pthread_t device;
  uint64_t start, cpu;

  (void) state;
  tq = vublk_tq_open (e.dev);
  assert_non_null (tq);
  r.tq = tq;
  submit_read (&r);
  assert_int_equal (fake_peer_take (e.peer), 1);
  eventfd_signal (e.q->call_fd);        /* a stale signal, already seen */
  assert_int_equal (pthread_create (&device, NULL, answer_later, &e), 0);
  start = clock_ns (CLOCK_MONOTONIC);
  assert_int_equal (vublk_tq_process (tq, 1, 10 * 1000000000ll), 1);
  assert_true (clock_ns (CLOCK_MONOTONIC) - start >= 40 * 1000000ull);
  assert_true (clock_ns (CLOCK_MONOTONIC) - start < 5 * 1000000000ull);
  pthread_join (device, NULL);
  assert_int_equal (r.completions, 1);
  assert_int_equal (r.last_result, 0);

  /* Nothing in flight and signals already seen: it sleeps out its
   * timeout instead of spinning. */
  eventfd_signal (e.q->call_fd);
  start = clock_ns (CLOCK_MONOTONIC);
  cpu = clock_ns (CLOCK_THREAD_CPUTIME_ID);
  assert_int_equal (vublk_tq_process (tq, 1, 200 * 1000000ll), 0);
  assert_true (clock_ns (CLOCK_MONOTONIC) - start >= 190 * 1000000ull);
  assert_true (clock_ns (CLOCK_THREAD_CPUTIME_ID) - cpu < 100 * 1000000ull);

  vublk_tq_close (tq);
  fake_env_free (&e);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_poll_announces_in_groups),
    cmocka_unit_test (test_without_poll_one_by_one),
    cmocka_unit_test (test_sleep_wakes_on_signal),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
