/* driven_probe — checks of a request's and a driven queue's life against
 * a real backend, one per mode; exit 0 if it holds.
 *
 *   driven_probe close-wakes SOCKET
 *       A thread waits in vublk_tq_process with nothing in flight, once
 *       with no timeout and once with the largest timeout.  While it
 *       waits it must sleep (under 30 ms of CPU in 300 ms: a timeout
 *       that overflows turns the wait into a busy loop), and vublk_close
 *       must end the wait with -ESHUTDOWN within 2 s.
 *   driven_probe claim-race SOCKET ROUNDS
 *       thread_queues on a backend with 3 queues: in each round 12
 *       threads make their first read at the same moment (each may claim
 *       a queue), then stay idle; one more thread's read must still
 *       complete within 5 s.  If the claims left no queue undriven, its
 *       request would wait on an idle thread's queue for ever.
 *   driven_probe idle-owner SOCKET
 *       With a 1 s request timeout, a thread submits a read on its driven
 *       queue and does not process for 3 s; then the read must complete
 *       with no reconnect: answers waiting in the used ring are not a
 *       hung backend.
 *   driven_probe pool-starved SOCKET
 *       With a 1 MiB pool and a 1 s request timeout, the caller holds the
 *       whole pool (vublk_buf_alloc) and reads into its own memory, which
 *       needs a bounce buffer: the read must fail with ENOMEM within 5 s
 *       instead of waiting for ever, from a driven queue and (the queue
 *       let go, so a single-queue backend has a shared one) from the
 *       shared ones; once the pool is free again, reads work.
 *   driven_probe all-driven SOCKET
 *       Every queue driven: idle threads claim all queues but one, then
 *       in each of 6 rounds a new thread claims the last, submits a read
 *       with vublk_aio_submit and processes its own queue: the read must
 *       complete there within 3 s (it must not wait on an idle owner's
 *       queue).  On a single-queue backend: no idle owners, same check.
 *   driven_probe zero-length SOCKET
 *       Writes and write-zeroes of zero bytes at an unaligned offset, on a
 *       driven queue and on the shared ones, succeed and change nothing
 *       (the block they point into keeps its bytes).  Write-zeroes only if
 *       the device offers it.
 *   driven_probe spin-bound SOCKET BACKEND-PID
 *       With the backend stopped (SIGSTOP to BACKEND-PID), a thread keeps
 *       8, then 9 reads in flight on its driven queue and asks
 *       vublk_tq_spin to poll for 300 ms: with 8 it must poll the whole
 *       time (an event loop's thread polls up to that depth), with 9
 *       return at once (under 100 ms: the backend is busy and polling
 *       would only take CPU from it).  Then the backend runs again and
 *       every read completes.  Last, with one read in flight from
 *       another thread (on a shared queue, the completion threads'),
 *       vublk_tq_spin must return at once too.
 *
 * VUBLK_PROBE_RING=split|packed in the environment picks the ring.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vublk.h"

#define RACERS 12

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct vublk *
open_device_pool (const char *socket, bool thread_queues,
                  double request_timeout, size_t pool_size)
{
  struct vublk_options o;
  struct vublk *dev;

  vublk_options_init (&o);
  /* VUBLK_PROBE_RING=split|packed picks the ring layout (dpdk-backend.sh
   * runs every check with both). */
  const char *ring = getenv ("VUBLK_PROBE_RING");
  if (ring && *ring && vublk_options_set (&o, "ring", ring)) {
    fprintf (stderr, "driven_probe: %s\n", vublk_get_error ());
    return NULL;
  }
  if (pool_size)
    o.pool_size = pool_size;
  o.thread_queues = thread_queues;
  if (request_timeout > 0)
    o.request_timeout = request_timeout;
  if (!(dev = vublk_open (socket, &o)))
    fprintf (stderr, "driven_probe: %s\n", vublk_get_error ());
  return dev;
}

static struct vublk *
open_device (const char *socket, bool thread_queues, double request_timeout)
{
  return open_device_pool (socket, thread_queues, request_timeout, 0);
}

struct waiter {
  struct vublk *dev;
  int64_t timeout_ns;
  pthread_t thread;
  int result;
  _Atomic bool returned, waiting;
};

/* Claims a queue and waits on it for a completion that never comes. */
static void *
wait_on_queue (void *arg)
{
  struct waiter *w = arg;
  struct vublk_tq *tq = vublk_tq_open (w->dev);

  if (!tq) {
    w->result = 1;
    w->returned = true;
    return NULL;
  }
  w->waiting = true;
  w->result = vublk_tq_process (tq, 1, w->timeout_ns);
  w->returned = true;
  vublk_tq_close (tq);
  return NULL;
}

/* CPU seconds thread t has used. */
static double
thread_cpu (pthread_t t)
{
  clockid_t c;
  struct timespec ts;

  if (pthread_getcpuclockid (t, &c) || clock_gettime (c, &ts))
    return -1;
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
close_wakes_one (const char *socket, int64_t timeout_ns, const char *what)
{
  struct waiter w = { .timeout_ns = timeout_ns };
  double cpu0, cpu1, t;

  if (!(w.dev = open_device (socket, false, 0)))
    return 1;
  if (pthread_create (&w.thread, NULL, wait_on_queue, &w))
    return 1;
  while (!w.waiting && !w.returned)
    usleep (1000);
  usleep (20000);
  cpu0 = thread_cpu (w.thread);
  usleep (300000);
  cpu1 = thread_cpu (w.thread);
  if (w.returned) {
    fprintf (stderr, "driven_probe: %s: the wait ended by itself (%d)\n",
             what, w.result);
    return 1;
  }
  if (cpu0 < 0 || cpu1 - cpu0 > 0.030) {
    fprintf (stderr, "driven_probe: %s: the waiting thread used %.0f ms of "
             "CPU in 300 ms: it is not sleeping\n", what, (cpu1 - cpu0) * 1e3);
    return 1;
  }
  t = now ();
  vublk_close (w.dev);
  while (!w.returned && now () - t < 2)
    usleep (1000);
  if (!w.returned) {
    fprintf (stderr, "driven_probe: %s: vublk_close did not end the wait "
             "within 2 s\n", what);
    return 1;
  }
  pthread_join (w.thread, NULL);
  if (w.result != -ESHUTDOWN) {
    fprintf (stderr, "driven_probe: %s: the wait returned %d, not "
             "-ESHUTDOWN\n", what, w.result);
    return 1;
  }
  printf ("%s: sleeps, and vublk_close ends the wait: ok\n", what);
  return 0;
}

static int
close_wakes (const char *socket)
{
  int failed = close_wakes_one (socket, -1, "no timeout");

  failed |= close_wakes_one (socket, INT64_MAX, "largest timeout");
  return failed;
}

struct racer {
  struct vublk *dev;
  pthread_barrier_t *start, *claimed, *done;
  int result;
};

/* A first read at the same moment as the others, then idle until the
 * round is over. */
static void *
race (void *arg)
{
  struct racer *r = arg;
  char buf[512];

  pthread_barrier_wait (r->start);
  r->result = vublk_pread (r->dev, buf, sizeof buf, 0) == sizeof buf ? 0 : 1;
  pthread_barrier_wait (r->claimed);
  pthread_barrier_wait (r->done);
  return NULL;
}

struct late_read {
  struct vublk *dev;
  _Atomic int result;   /* 2 while the read is in flight */
};

static void *
read_late (void *arg)
{
  struct late_read *l = arg;
  char buf[512];

  l->result = vublk_pread (l->dev, buf, sizeof buf, 512) == sizeof buf ? 0 : 1;
  return NULL;
}

static int
claim_race (const char *socket, unsigned rounds)
{
  for (unsigned round = 0; round < rounds; round++) {
    pthread_barrier_t start, claimed, done;
    struct racer r[RACERS];
    pthread_t t[RACERS], late;
    struct late_read l = { .result = 2 };
    double t0;

    if (!(l.dev = open_device (socket, true, 0)))
      return 1;
    pthread_barrier_init (&start, NULL, RACERS);
    pthread_barrier_init (&claimed, NULL, RACERS + 1);
    pthread_barrier_init (&done, NULL, RACERS + 1);
    for (unsigned i = 0; i < RACERS; i++) {
      r[i] = (struct racer) { l.dev, &start, &claimed, &done, 0 };
      if (pthread_create (&t[i], NULL, race, &r[i]))
        return 1;
    }
    pthread_barrier_wait (&claimed);
    if (pthread_create (&late, NULL, read_late, &l))
      return 1;
    for (t0 = now (); l.result == 2 && now () - t0 < 5;)
      usleep (1000);
    if (l.result == 2) {
      fprintf (stderr, "driven_probe: round %u: a read after %d threads "
               "claimed queues did not complete in 5 s: no queue was left "
               "undriven\n", round, RACERS);
      return 1;
    }
    pthread_join (late, NULL);
    pthread_barrier_wait (&done);
    for (unsigned i = 0; i < RACERS; i++) {
      pthread_join (t[i], NULL);
      if (r[i].result) {
        fprintf (stderr, "driven_probe: round %u: a racing read failed: "
                 "%s\n", round, vublk_get_error ());
        return 1;
      }
    }
    if (l.result) {
      fprintf (stderr, "driven_probe: round %u: the late read failed\n",
               round);
      return 1;
    }
    vublk_close (l.dev);
    pthread_barrier_destroy (&start);
    pthread_barrier_destroy (&claimed);
    pthread_barrier_destroy (&done);
  }
  printf ("claim race: %u rounds of %d threads claiming at once left a "
          "queue for the others: ok\n", rounds, RACERS);
  return 0;
}

static void
set_flag (void *opaque, int result)
{
  *(_Atomic int *) opaque = result == 0 ? 1 : result;
}

static int
idle_owner (const char *socket)
{
  struct vublk *dev = open_device (socket, false, 1.0);
  struct vublk_tq *tq;
  struct vublk_info info;
  _Atomic int done = 0;
  void *buf;
  double t0;

  if (!dev || !(tq = vublk_tq_open (dev))
      || !(buf = vublk_buf_alloc (dev, 4096))) {
    fprintf (stderr, "driven_probe: %s\n", vublk_get_error ());
    return 1;
  }
  struct vublk_io io = {
    .op = VUBLK_OP_READ, .offset = 0, .buf = buf, .len = 4096,
    .cb = set_flag, .opaque = (void *) &done,
  };
  if (vublk_tq_submit (tq, &io) < 0) {
    fprintf (stderr, "driven_probe: %s\n", vublk_get_error ());
    return 1;
  }
  sleep (3);           /* answered by now, and not harvested */
  for (t0 = now (); !done && now () - t0 < 5;)
    if (vublk_tq_process (tq, 1, 100000000) < 0)
      break;
  vublk_get_info (dev, &info);
  if (done != 1 || info.reconnects) {
    fprintf (stderr, "driven_probe: idle owner: read %s, %llu reconnects: "
             "an answer waiting for its owner was taken for a hung "
             "backend\n", done == 1 ? "completed" : "did not complete",
             (unsigned long long) info.reconnects);
    return 1;
  }
  vublk_buf_free (dev, buf);
  vublk_tq_close (tq);
  vublk_close (dev);
  printf ("idle owner: its answer waited in the ring, no reconnect: ok\n");
  return 0;
}

/* Reads 64 KiB into the caller's own memory (a bounce buffer needed) on
 * tq (NULL: the shared queues); returns the result within 5 s, or 1 if
 * there was none by then. */
static int
bounced_read (struct vublk *dev, struct vublk_tq *tq)
{
  static char buf[65536];
  _Atomic int done = 0;
  int result = 1;
  struct vublk_io io = {
    .op = VUBLK_OP_READ, .offset = 4096, .buf = buf, .len = sizeof buf,
    .cb = set_flag, .opaque = (void *) &done,
  };
  double t0 = now ();

  if ((tq ? vublk_tq_submit (tq, &io) : vublk_aio_submit (dev, &io)) < 0)
    return -errno;
  while (!done && now () - t0 < 5) {
    if (tq)
      vublk_tq_process (tq, 1, 100000000);
    else
      usleep (1000);
  }
  if (done)
    result = done == 1 ? 0 : done;
  return result;
}

static int
pool_starved (const char *socket)
{
  struct vublk *dev = open_device_pool (socket, false, 1.0, 1 << 20);
  struct vublk_tq *tq;
  void *held[1024];
  unsigned n = 0;
  int driven, shared;

  if (!dev || !(tq = vublk_tq_open (dev)))
    return 1;
  while (n < 1024 && (held[n] = vublk_buf_alloc (dev, 4096)))
    n++;
  driven = bounced_read (dev, tq);
  vublk_tq_close (tq);
  shared = bounced_read (dev, NULL);
  if (driven != -ENOMEM || shared != -ENOMEM) {
    fprintf (stderr, "driven_probe: pool starved: a read needing a bounce "
             "buffer gave %s (driven queue), %s (shared): not ENOMEM "
             "within 5 s\n", driven == 1 ? "nothing" : strerror (-driven),
             shared == 1 ? "nothing" : strerror (-shared));
    return 1;
  }
  while (n)
    vublk_buf_free (dev, held[--n]);
  if (bounced_read (dev, NULL) || !(tq = vublk_tq_open (dev))
      || bounced_read (dev, tq)) {
    fprintf (stderr, "driven_probe: pool starved: reads failed after the "
             "pool was freed\n");
    return 1;
  }
  vublk_tq_close (tq);
  vublk_close (dev);
  printf ("pool starved: reads fail with ENOMEM, then work again: ok\n");
  return 0;
}

struct idle_owner {
  struct vublk *dev;
  _Atomic int state;       /* 0 starting, 1 claimed, -1 failed */
  _Atomic bool stop;
};

/* Claims a queue and leaves it idle until told to stop. */
static void *
claim_and_idle (void *arg)
{
  struct idle_owner *o = arg;
  struct vublk_tq *tq = vublk_tq_open (o->dev);

  o->state = tq ? 1 : -1;
  while (tq && !o->stop)
    usleep (1000);
  vublk_tq_close (tq);
  return NULL;
}

/* A new thread claims the last undriven queue, reads with
 * vublk_aio_submit and processes its own queue for up to 3 s; *result
 * is 0 if the read completed there. */
struct own_read {
  struct vublk *dev;
  int result;
};

static void *
read_on_own_queue (void *arg)
{
  struct own_read *r = arg;
  struct vublk_tq *tq = vublk_tq_open (r->dev);
  void *buf = vublk_buf_alloc (r->dev, 4096);
  _Atomic int done = 0;
  double t0;

  r->result = 1;
  if (!tq || !buf)
    goto out;
  struct vublk_io io = {
    .op = VUBLK_OP_READ, .offset = 0, .buf = buf, .len = 4096,
    .cb = set_flag, .opaque = (void *) &done,
  };
  if (vublk_aio_submit (r->dev, &io) < 0)
    goto out;
  for (t0 = now (); !done && now () - t0 < 3;)
    if (vublk_tq_process (tq, 1, 100000000) < 0)
      break;
  r->result = done == 1 ? 0 : 1;
 out:
  vublk_buf_free (r->dev, buf);
  vublk_tq_close (tq);
  return NULL;
}

static int
all_driven (const char *socket)
{
  struct vublk *dev = open_device (socket, false, 0);
  struct idle_owner owners[16];
  pthread_t idle[16];
  struct vublk_info info;
  unsigned nidle;
  int failed = 0;

  if (!dev)
    return 1;
  vublk_get_info (dev, &info);
  nidle = info.num_queues - 1;
  if (nidle > 16)
    nidle = 16;
  for (unsigned i = 0; i < nidle; i++) {
    owners[i] = (struct idle_owner) { .dev = dev };
    if (pthread_create (&idle[i], NULL, claim_and_idle, &owners[i]))
      return 1;
    while (owners[i].state == 0)
      usleep (1000);
    if (owners[i].state < 0) {
      fprintf (stderr, "driven_probe: %s\n", vublk_get_error ());
      return 1;
    }
  }
  for (int round = 0; round < 6 && !failed; round++) {
    struct own_read r = { .dev = dev };
    pthread_t t;

    if (pthread_create (&t, NULL, read_on_own_queue, &r))
      return 1;
    pthread_join (t, NULL);
    if (r.result) {
      fprintf (stderr, "driven_probe: all driven: round %d: a read the "
               "owner of the last queue submitted with vublk_aio_submit "
               "did not complete in its own vublk_tq_process within 3 s "
               "(%u idle owners)\n", round, nidle);
      return 1;      /* the read may still sit on an idle owner's queue */
    }
  }
  for (unsigned i = 0; i < nidle; i++) {
    owners[i].stop = true;
    pthread_join (idle[i], NULL);
  }
  vublk_close (dev);
  printf ("all driven: an owner's vublk_aio_submit read completed on its "
          "own queue in 6 rounds (%u idle owners): ok\n", nidle);
  return 0;
}

static int
zero_length (const char *socket)
{
  struct vublk *dev = open_device (socket, true, 0);
  struct vublk_info info;
  unsigned char want[512], got[512];
  int failed = 0;

  if (!dev)
    return 1;
  memset (want, 0xaa, sizeof want);
  if (vublk_pwrite (dev, want, sizeof want, 0, 0) != sizeof want) {
    fprintf (stderr, "driven_probe: %s\n", vublk_get_error ());
    return 1;
  }
  vublk_get_info (dev, &info);
  /* thread_queues: this thread's calls drive a queue of their own. */
  for (int round = 0; round < 2; round++) {
    if (vublk_pwrite (dev, want, 0, 100, 0) != 0
        || (info.can_write_zeroes && vublk_write_zeroes (dev, 100, 0, 0) != 0)
        || vublk_pread (dev, got, 0, 100) != 0) {
      fprintf (stderr, "driven_probe: zero bytes at offset 100 failed: "
               "%s\n", vublk_get_error ());
      failed = 1;
    }
    if (vublk_pread (dev, got, sizeof got, 0) != sizeof got
        || memcmp (got, want, sizeof got)) {
      fprintf (stderr, "driven_probe: a request for zero bytes at offset "
               "100 changed block 0\n");
      failed = 1;
    }
    vublk_close (dev);
    /* Again on the shared queues. */
    if (round == 0 && !(dev = open_device (socket, false, 0)))
      return 1;
  }
  if (!failed)
    printf ("zero-length requests at an unaligned offset change nothing: "
            "ok\n");
  return failed;
}

/* Counts a completed read of spin_bound's. */
static void
count_completion (void *opaque, int result)
{
  int *done = opaque;

  if (result >= 0)
    ++*done;
  else
    *done = -1000;   /* any failure makes the count wrong */
}

/* How long vublk_tq_spin (300 ms) polls with `depth` reads in flight on
 * tq against a stopped backend; -1 on error. */
static double
spin_time (struct vublk_tq *tq, unsigned depth, void *buf, int *done)
{
  double t;
  int r;

  for (unsigned i = 0; i < depth; i++) {
    struct vublk_io io = { .op = VUBLK_OP_READ, .offset = 4096ull * i,
                           .buf = (char *) buf + 4096 * i, .len = 4096,
                           .cb = count_completion, .opaque = done };

    if (vublk_tq_submit (tq, &io) < 0) {
      fprintf (stderr, "driven_probe: submit: %s\n", vublk_get_error ());
      return -1;
    }
  }
  t = now ();
  r = vublk_tq_spin (tq, 300000000, -1);
  t = now () - t;
  if (r != 0) {
    fprintf (stderr, "driven_probe: vublk_tq_spin returned %d with the "
             "backend stopped\n", r);
    return -1;
  }
  return t;
}

struct other_read {
  struct vublk *dev;
  void *buf;
  _Atomic int done;
  int submitted;
};

/* Submits one read from a thread that drives no queue. */
static void *
another_thread_reads (void *arg)
{
  struct other_read *o = arg;
  struct vublk_io io = { .op = VUBLK_OP_READ, .buf = o->buf, .len = 4096,
                         .cb = set_flag, .opaque = &o->done };

  o->submitted = vublk_aio_submit (o->dev, &io);
  return NULL;
}

static int
spin_bound (const char *socket, pid_t backend)
{
  struct vublk *dev = open_device (socket, false, 0);
  struct vublk_tq *tq;
  void *buf;
  int done = 0, failed = 0;
  double with8, with9;

  if (!dev)
    return 1;
  tq = vublk_tq_open (dev);
  buf = vublk_buf_alloc (dev, 17 * 4096);
  if (!tq || !buf) {
    fprintf (stderr, "driven_probe: no driven queue or buffer: %s\n",
             vublk_get_error ());
    return 1;
  }
  if (kill (backend, SIGSTOP)) {
    perror ("driven_probe: SIGSTOP");
    return 1;
  }
  with8 = spin_time (tq, 8, buf, &done);
  with9 = with8 < 0 ? -1 : spin_time (tq, 1, (char *) buf + 8 * 4096, &done);
  kill (backend, SIGCONT);
  if (with8 < 0 || with9 < 0)
    failed = 1;
  else if (with8 < 0.25) {
    fprintf (stderr, "driven_probe: with 8 reads in flight vublk_tq_spin "
             "polled %.0f ms of 300: it should poll the whole time\n",
             with8 * 1e3);
    failed = 1;
  }
  else if (with9 > 0.1) {
    fprintf (stderr, "driven_probe: with 9 reads in flight vublk_tq_spin "
             "polled %.0f ms: it should return at once\n", with9 * 1e3);
    failed = 1;
  }
  for (double t = now (); done >= 0 && done < 9 && now () - t < 10; )
    if (vublk_tq_process (tq, 1, 1000000000) < 0)
      break;
  if (done != 9) {
    fprintf (stderr, "driven_probe: %d of 9 reads completed after the "
             "backend ran again\n", done < 0 ? 0 : done);
    failed = 1;
  }
  /* One read in flight on a shared queue only. */
  struct other_read o = { .dev = dev, .buf = (char *) buf + 9 * 4096 };
  pthread_t t;
  double other = -1;

  if (!failed && kill (backend, SIGSTOP) == 0) {
    if (pthread_create (&t, NULL, another_thread_reads, &o) == 0) {
      pthread_join (t, NULL);
      if (o.submitted == 0) {
        other = now ();
        vublk_tq_spin (tq, 300000000, -1);
        other = now () - other;
      }
    }
    kill (backend, SIGCONT);
    for (double t0 = now (); o.submitted == 0 && !o.done && now () - t0 < 10; )
      usleep (1000);
    if (o.submitted != 0 || o.done != 1) {
      fprintf (stderr, "driven_probe: the other thread's read failed or "
               "did not complete\n");
      failed = 1;
    }
    else if (other > 0.1) {
      fprintf (stderr, "driven_probe: with a read in flight only on a "
               "shared queue vublk_tq_spin polled %.0f ms: it should "
               "return at once\n", other * 1e3);
      failed = 1;
    }
  }
  vublk_buf_free (dev, buf);
  vublk_tq_close (tq);
  vublk_close (dev);
  if (!failed)
    printf ("vublk_tq_spin polls with 8 in flight (%.0f ms), not with 9 "
            "(%.1f ms) nor for another queue's read (%.1f ms): ok\n",
            with8 * 1e3, with9 * 1e3, other * 1e3);
  return failed;
}

int
main (int argc, char **argv)
{
  if (argc == 3 && !strcmp (argv[1], "close-wakes"))
    return close_wakes (argv[2]);
  if (argc == 4 && !strcmp (argv[1], "claim-race"))
    return claim_race (argv[2], (unsigned) strtoul (argv[3], NULL, 10));
  if (argc == 3 && !strcmp (argv[1], "idle-owner"))
    return idle_owner (argv[2]);
  if (argc == 3 && !strcmp (argv[1], "pool-starved"))
    return pool_starved (argv[2]);
  if (argc == 3 && !strcmp (argv[1], "all-driven"))
    return all_driven (argv[2]);
  if (argc == 3 && !strcmp (argv[1], "zero-length"))
    return zero_length (argv[2]);
  if (argc == 4 && !strcmp (argv[1], "spin-bound"))
    return spin_bound (argv[2], (pid_t) strtol (argv[3], NULL, 10));
  fprintf (stderr, "usage: driven_probe close-wakes SOCKET"
           " | claim-race SOCKET ROUNDS | idle-owner SOCKET"
           " | pool-starved SOCKET | all-driven SOCKET"
           " | zero-length SOCKET | spin-bound SOCKET BACKEND-PID\n");
  return 2;
}
