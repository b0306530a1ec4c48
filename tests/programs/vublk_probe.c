/* vublk_probe — single checks of libvublk's reliability behaviour that
 * the integration scripts arrange the backend for.
 *
 *   vublk_probe expect-eio SOCKET RECONNECT_TIMEOUT REQUEST_TIMEOUT
 *       Opens the device, signals readiness by creating SOCKET.ready, then
 *       reads in a loop until a read fails.  Exit 0 if it fails with EIO
 *       within RECONNECT_TIMEOUT + REQUEST_TIMEOUT + 8 s of the first
 *       failure-free read stopping; then waits (up to 20 s) for the
 *       backend to come back and exits 0 only if a new read succeeds.
 *   vublk_probe wait-resize SOCKET NEW_SIZE
 *       Opens the device, creates SOCKET.ready, and waits up to 10 s for
 *       vublk_get_size to report NEW_SIZE; then reads the last block.
 *   vublk_probe fd-check SOCKET
 *       Opens the device, reads a block, closes it, and exits 0 only if
 *       the process holds exactly the fds it held before (no fd the
 *       backend sent is leaked); then opens it with 4 queues under
 *       rising fd limits, until one is enough: each open that fails
 *       must leave the process's fds as they were (fd 0 included);
 *       then, with thread_queues, checks that a queue a synchronous call
 *       claimed is let go with its device (closed on the claiming
 *       thread, or on another while the claiming one lives on).
 *   vublk_probe spin SOCKET
 *       vublk_aio_spin: a read's callback runs on the spinning thread;
 *       spinning with nothing to do returns 0 after its time, with an
 *       fd that is readable returns 1 at once; and afterwards a read
 *       still completes on the completion thread (notifications were
 *       re-enabled), also after a spin that ended by timing out.
 *   vublk_probe strand SOCKET
 *       With thread_queues and 2 queues, against a backend that stalls
 *       the first request: that read is in flight when another thread's
 *       synchronous read claims a queue and idles; it must complete
 *       within 10 s (request timeout 1 s, reconnect, replay).
 *   vublk_probe fallback SOCKET
 *       With thread_queues and 2 queues, one claimed by another thread's
 *       synchronous read (which then idles) and one by a vublk_tq_open
 *       owner that processes it: an asynchronous read must go to the
 *       latter and complete within 5 s.
 *   vublk_probe streams SOCKET
 *       With thread_queues and 2 queues, each busy with a stream of
 *       asynchronous reads whose callbacks resubmit: a third thread's
 *       synchronous read must return within 5 s.
 *   vublk_probe close-during-reconnect SOCKET
 *       Opens the device, creates SOCKET.ready, and once the library
 *       says it is reconnecting waits 700 ms and closes the device (the
 *       script holds the reconnect with VUBLK_TEST_RECONNECT_PAUSE_MS);
 *       the script bounds how long that takes.
 *   vublk_probe plug SOCKET
 *       Between vublk_aio_plug and vublk_aio_unplug: a 4 KiB write must
 *       not reach the backend (no completion within 300 ms), and once a
 *       1 MiB write follows, both must complete without unplugging.
 *       Then vublk_close with a plugged write: it completes, within 3 s.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vublk.h"

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
signal_ready (const char *sock)
{
  char path[4096];

  snprintf (path, sizeof path, "%s.ready", sock);
  close (open (path, O_CREAT | O_WRONLY, 0644));
}

/* A read submitted on the driven queue tq: where and how it completed. */
struct driven_read {
  int done, result;
  pthread_t thread;
};

static void
driven_read_done (void *opaque, int result)
{
  struct driven_read *r = opaque;

  r->result = result;
  r->thread = pthread_self ();
  r->done = 1;
}

/* Reads len bytes at 0 through tq; returns len or -errno.  Fails the
 * probe if the completion ran on any thread but this one. */
static ssize_t
read_driven (struct vublk_tq *tq, void *buf, size_t len)
{
  struct driven_read r = { 0, 0, 0 };
  struct vublk_io io = { .op = VUBLK_OP_READ, .buf = buf, .len = len,
                         .cb = driven_read_done, .opaque = &r };
  int err = vublk_tq_submit (tq, &io);

  if (err)
    return err;
  while (!r.done)
    if ((err = vublk_tq_process (tq, 1, -1)) < 0)
      return err;
  if (!pthread_equal (r.thread, pthread_self ())) {
    fprintf (stderr, "vublk_probe: a driven request completed on another "
             "thread (result %d)\n", r.result);
    exit (1);
  }
  return r.result ? r.result : (ssize_t) len;
}

/* With driven, the reads run to completion on a queue this thread
 * drives (vublk_tq_open): the failures must reach it just the same. */
static int
expect_eio (const char *sock, double reconnect, double request, bool driven)
{
  struct vublk_options o;
  struct vublk_tq *tq = NULL;
  struct vublk *dev;
  char buf[4096];
  double last_ok, failed_at, limit = reconnect + request + 8;
  ssize_t r;

  vublk_options_init (&o);
  o.connect_timeout = 1;
  o.reconnect_timeout = reconnect;
  o.request_timeout = request;
  dev = vublk_open (sock, &o);
  if (!dev) {
    fprintf (stderr, "vublk_probe: %s\n", vublk_get_error ());
    return 1;
  }
  if (driven && !(tq = vublk_tq_open (dev))) {
    fprintf (stderr, "vublk_probe: %s\n", vublk_get_error ());
    return 1;
  }
  signal_ready (sock);
  last_ok = now ();
  while ((r = tq ? read_driven (tq, buf, sizeof buf)
              : vublk_pread (dev, buf, sizeof buf, 0)) == sizeof buf) {
    last_ok = now ();
    usleep (20000);
  }
  failed_at = now ();
  printf ("read failed after %.1f s: %s\n", failed_at - last_ok,
          strerror ((int) -r));
  if (r != -EIO || failed_at - last_ok > limit) {
    fprintf (stderr, "vublk_probe: expected EIO within %.0f s, got %zd "
             "after %.1f s\n", limit, r, failed_at - last_ok);
    return 1;
  }
  /* New requests fail fast while the backend is away ... */
  r = vublk_pread (dev, buf, sizeof buf, 0);
  if (r != -EIO) {
    fprintf (stderr, "vublk_probe: read while failed returned %zd\n", r);
    return 1;
  }
  printf ("new read fails at once with EIO\n");
  signal_ready (sock);
  /* ... and succeed again once it is back. */
  for (double until = now () + 20; now () < until; usleep (200000))
    if (vublk_pread (dev, buf, sizeof buf, 0) == sizeof buf) {
      printf ("device recovered\n");
      vublk_close (dev);
      /* The handle outlives the device until its thread lets go. */
      if (tq && vublk_tq_process (tq, 1, 0) != -ESHUTDOWN) {
        fprintf (stderr, "vublk_probe: a handle after close still works\n");
        return 1;
      }
      vublk_tq_close (tq);
      return 0;
    }
  fprintf (stderr, "vublk_probe: device did not recover\n");
  return 1;
}

static int
wait_resize (const char *sock, unsigned long long want)
{
  struct vublk *dev = vublk_open (sock, NULL);
  char buf[512];

  if (!dev) {
    fprintf (stderr, "vublk_probe: %s\n", vublk_get_error ());
    return 1;
  }
  printf ("size before: %llu\n", (unsigned long long) vublk_get_size (dev));
  signal_ready (sock);
  for (double until = now () + 10; now () < until; usleep (50000))
    if (vublk_get_size (dev) == want) {
      printf ("size after: %llu\n", want);
      if (vublk_pread (dev, buf, sizeof buf, want - sizeof buf)
          != sizeof buf) {
        fprintf (stderr, "vublk_probe: reading the new last block: %s\n",
                 vublk_get_error ());
        return 1;
      }
      vublk_close (dev);
      return 0;
    }
  fprintf (stderr, "vublk_probe: size stayed %llu, expected %llu\n",
           (unsigned long long) vublk_get_size (dev), want);
  return 1;
}

/* Number of open fds of this process. */
static int
count_fds (void)
{
  int n = 0;
  DIR *d = opendir ("/proc/self/fd");
  struct dirent *e;

  while (d && (e = readdir (d)))
    n += e->d_name[0] != '.';
  if (d)
    closedir (d);
  return n;
}

static struct vublk *claim_dev;
static sem_t claim_go, claim_done;
static int claim_reads_ok;

/* Reads a block on claim_dev (a synchronous call: it claims a queue)
 * each time claim_go is posted, until claim_dev is NULL; stays alive in
 * between, as a server's worker does. */
static void *
reader_thread (void *arg)
{
  char buf[512];

  (void) arg;
  for (;;) {
    sem_wait (&claim_go);
    if (!claim_dev)
      return NULL;
    claim_reads_ok += vublk_pread (claim_dev, buf, sizeof buf, 0)
                      == (ssize_t) sizeof buf;
    sem_post (&claim_done);
  }
}

/* Opens sock with thread_queues and 2 queues, or NULL. */
static struct vublk *
open_thread_queues (const char *sock)
{
  struct vublk_options opts;
  struct vublk *dev;

  vublk_options_init (&opts);
  opts.num_queues = 2;
  opts.thread_queues = true;
  if (!(dev = vublk_open (sock, &opts)))
    fprintf (stderr, "vublk_probe: %s\n", vublk_get_error ());
  return dev;
}

/* thread_queues: a queue a synchronous call claimed is let go with its
 * device, whether the claiming thread closes it (the process then holds
 * fds_before fds again) or another thread does while the claiming one
 * lives on (its next call, on another device, lets the old one go). */
static int
thread_queue_release_check (const char *sock, int fds_before)
{
  char buf[512];
  pthread_t t;
  int one_claimed;

  for (int i = 0; i < 3; i++) {
    struct vublk *dev = open_thread_queues (sock);

    if (!dev || vublk_pread (dev, buf, sizeof buf, 0) != (ssize_t) sizeof buf)
      return 1;
    vublk_close (dev);
  }
  if (count_fds () != fds_before) {
    fprintf (stderr, "vublk_probe: thread_queues: %d fds after closing on "
             "the claiming thread, %d before\n", count_fds (), fds_before);
    return 1;
  }
  sem_init (&claim_go, 0, 0);
  sem_init (&claim_done, 0, 0);
  pthread_create (&t, NULL, reader_thread, NULL);
  if (!(claim_dev = open_thread_queues (sock)))
    return 1;
  sem_post (&claim_go);
  sem_wait (&claim_done);
  one_claimed = count_fds ();        /* one device, one queue claimed */
  vublk_close (claim_dev);
  if (!(claim_dev = open_thread_queues (sock)))
    return 1;
  sem_post (&claim_go);
  sem_wait (&claim_done);
  if (claim_reads_ok != 2 || count_fds () != one_claimed) {
    fprintf (stderr, "vublk_probe: thread_queues: %d fds with a second "
             "device claimed, %d with the first (%d reads ok): the closed "
             "device was kept\n", count_fds (), one_claimed, claim_reads_ok);
    return 1;
  }
  vublk_close (claim_dev);
  claim_dev = NULL;
  sem_post (&claim_go);
  pthread_join (t, NULL);
  return 0;
}

/* Opens with 4 queues under fd limits from too few to enough: every
 * open that fails for want of fds must leave the process's own fds
 * (fd 0 included) open and hold none of its own afterwards. */
static int
fd_limit_sweep (const char *sock, int fds_before)
{
  struct vublk_options opts;
  struct rlimit saved;

  vublk_options_init (&opts);
  opts.num_queues = 4;
  getrlimit (RLIMIT_NOFILE, &saved);
  for (rlim_t limit = fds_before + 1; limit < (rlim_t) fds_before + 40;
       limit++) {
    struct rlimit rl = { limit, saved.rlim_max };
    struct vublk *dev;
    int now;

    setrlimit (RLIMIT_NOFILE, &rl);
    dev = vublk_open (sock, &opts);
    setrlimit (RLIMIT_NOFILE, &saved);
    if (dev) {
      vublk_close (dev);
      return 0;
    }
    now = count_fds ();
    if (fcntl (0, F_GETFD) == -1 || now != fds_before) {
      fprintf (stderr, "vublk_probe: open failed under a limit of %d fds "
               "(%s) and left %d fds open, %d before%s\n", (int) limit,
               vublk_get_error (), now, fds_before,
               fcntl (0, F_GETFD) == -1 ? "; fd 0 was closed" : "");
      return 1;
    }
  }
  fprintf (stderr, "vublk_probe: open still failed with %d fds to spare\n",
           40);
  return 1;
}

static int
fd_check (const char *sock)
{
  int before = count_fds (), after;
  char buf[512];
  struct vublk *dev = vublk_open (sock, NULL);

  if (!dev) {
    fprintf (stderr, "vublk_probe: %s\n", vublk_get_error ());
    return 1;
  }
  if (vublk_pread (dev, buf, sizeof buf, 0) != (ssize_t) sizeof buf) {
    fprintf (stderr, "vublk_probe: read: %s\n", vublk_get_error ());
    return 1;
  }
  vublk_close (dev);
  after = count_fds ();
  if (after != before) {
    fprintf (stderr, "vublk_probe: %d fds before open, %d after close\n",
             before, after);
    return 1;
  }
  if (fd_limit_sweep (sock, before))
    return 1;
  return thread_queue_release_check (sock, before);
}

/* Every thread of this process but the calling one (the library's) must
 * block SIGINT and SIGTERM: a program's handlers then never run on them.
 * SigBlk in /proc/self/task/TID/status is a hex mask, bit n-1 = signal n.
 * Returns how many library threads were checked, or -1 on a failure. */
static int
library_threads_block_signals (void)
{
  DIR *d = opendir ("/proc/self/task");
  struct dirent *e;
  pid_t me = (pid_t) syscall (SYS_gettid);
  int checked = 0;

  if (!d)
    return -1;
  while ((e = readdir (d))) {
    char path[300], line[256];
    unsigned long long blocked = 0;
    FILE *f;

    if (e->d_name[0] == '.' || atoi (e->d_name) == me)
      continue;
    snprintf (path, sizeof path, "/proc/self/task/%s/status", e->d_name);
    if (!(f = fopen (path, "r")))
      continue;              /* the thread ended meanwhile */
    while (fgets (line, sizeof line, f))
      if (sscanf (line, "SigBlk: %llx", &blocked) == 1)
        break;
    fclose (f);
    if (!(blocked & (1ull << (SIGINT - 1))) || !(blocked & (1ull << (SIGTERM - 1)))) {
      fprintf (stderr, "vublk_probe: library thread %s does not block SIGINT/"
               "SIGTERM (SigBlk %llx)\n", e->d_name, blocked);
      closedir (d);
      return -1;
    }
    checked++;
  }
  closedir (d);
  return checked;
}

/* Opens with every signal unblocked in the caller and checks the
 * library's threads block them anyway. */
static int
signals_check (const char *sock)
{
  sigset_t none;
  struct vublk *dev;
  int n;

  sigemptyset (&none);
  pthread_sigmask (SIG_SETMASK, &none, NULL);
  if (!(dev = vublk_open (sock, NULL))) {
    fprintf (stderr, "vublk_probe: %s\n", vublk_get_error ());
    return 1;
  }
  n = library_threads_block_signals ();
  vublk_close (dev);
  if (n < 2) {
    fprintf (stderr, "vublk_probe: %d library threads checked\n", n);
    return 1;
  }
  return 0;
}

static void
note_done (void *opaque, int result)
{
  __atomic_store_n ((int *) opaque, result == 0 ? 1 : -1, __ATOMIC_RELEASE);
}

/* Waits up to secs for *flag to become non-zero; returns it. */
static int
wait_flag (const int *flag, double secs)
{
  double until = now () + secs;

  while (!__atomic_load_n (flag, __ATOMIC_ACQUIRE) && now () < until)
    usleep (1000);
  return __atomic_load_n (flag, __ATOMIC_ACQUIRE);
}

static int
plug_check (const char *sock)
{
  struct vublk *dev = vublk_open (sock, NULL);
  int small_done = 0, large_done = 0, r = 1;
  void *small, *large;

  if (!dev) {
    fprintf (stderr, "vublk_probe: %s\n", vublk_get_error ());
    return 1;
  }
  small = vublk_buf_alloc (dev, 4096);
  large = vublk_buf_alloc (dev, 1 << 20);
  if (!small || !large) {
    fprintf (stderr, "vublk_probe: no pool memory\n");
    return 1;
  }
  memset (small, 0x11, 4096);
  memset (large, 0x22, 1 << 20);
  vublk_aio_plug (dev);
  struct vublk_io w1 = { .op = VUBLK_OP_WRITE, .offset = 0, .buf = small,
                         .len = 4096, .cb = note_done, .opaque = &small_done };
  struct vublk_io w2 = { .op = VUBLK_OP_WRITE, .offset = 1 << 20,
                         .buf = large, .len = 1 << 20, .cb = note_done,
                         .opaque = &large_done };
  if (vublk_aio_submit (dev, &w1)) {
    fprintf (stderr, "vublk_probe: submit: %s\n", vublk_get_error ());
    return 1;
  }
  if (wait_flag (&small_done, 0.3))
    fprintf (stderr, "vublk_probe: a plugged 4 KiB write completed before "
             "unplug\n");
  else if (vublk_aio_submit (dev, &w2))
    fprintf (stderr, "vublk_probe: submit: %s\n", vublk_get_error ());
  else if (wait_flag (&large_done, 5) != 1 || wait_flag (&small_done, 5) != 1)
    fprintf (stderr, "vublk_probe: plugged writes of 1 MiB did not complete "
             "without unplug (small %d, large %d)\n", small_done, large_done);
  else
    r = 0;
  vublk_aio_unplug (dev);
  wait_flag (&small_done, 5);
  wait_flag (&large_done, 5);
  vublk_buf_free (dev, large);
  /* Closing with a plugged write waiting: vublk_close announces it and
   * it completes, instead of close waiting out the request timeout. */
  int last_done = 0;
  struct vublk_io w3 = { .op = VUBLK_OP_WRITE, .offset = 8192, .buf = small,
                         .len = 4096, .cb = note_done, .opaque = &last_done };
  vublk_aio_plug (dev);
  if (vublk_aio_submit (dev, &w3)) {
    fprintf (stderr, "vublk_probe: submit: %s\n", vublk_get_error ());
    return 1;
  }
  double t0 = now ();
  vublk_close (dev);            /* frees small with the pool */
  int last = __atomic_load_n (&last_done, __ATOMIC_ACQUIRE);
  if (r == 0 && (last != 1 || now () - t0 > 3)) {
    fprintf (stderr, "vublk_probe: vublk_close with a plugged write took "
             "%.1f s, the write %s\n", now () - t0,
             last == 1 ? "completed" : "never completed");
    r = 1;
  }
  return r;
}

struct spin_read {
  int done;
  pthread_t thread;
};

static void
spin_read_done (void *opaque, int result)
{
  struct spin_read *r = opaque;

  r->thread = pthread_self ();
  __atomic_store_n (&r->done, result == 0 ? 1 : -1, __ATOMIC_RELEASE);
}

/* Submits a 4 KiB read of block `block` into buf, completing into r. */
static int
submit_read (struct vublk *dev, void *buf, uint64_t block,
             struct spin_read *r)
{
  struct vublk_io io = { .op = VUBLK_OP_READ, .offset = block * 4096,
                         .buf = buf, .len = 4096, .cb = spin_read_done,
                         .opaque = r };

  r->done = 0;
  if (vublk_aio_submit (dev, &io)) {
    fprintf (stderr, "vublk_probe: submit: %s\n", vublk_get_error ());
    return -1;
  }
  return 0;
}

static int
spin_check (const char *sock)
{
  struct vublk *dev = vublk_open (sock, NULL);
  struct spin_read r;
  void *buf;
  double t;
  int efd;
  uint64_t one = 1;

  if (!dev || !(buf = vublk_buf_alloc (dev, 4096))) {
    fprintf (stderr, "vublk_probe: %s\n", vublk_get_error ());
    return 1;
  }
  /* 1. The spinning thread harvests the completion itself.  The
   * completion thread may win a race now and then (a completion that
   * arrives before the spin has turned notifications off), so this is
   * tried up to 20 times; it must succeed at least once. */
  int own = 0;
  for (int i = 0; i < 20 && !own; i++) {
    if (submit_read (dev, buf, 1, &r))
      return 1;
    double t0 = now ();
    int spun = vublk_aio_spin (dev, 500000000ull, -1);
    double took = now () - t0;
    if (wait_flag (&r.done, 5) != 1) {
      fprintf (stderr, "vublk_probe: a read did not complete\n");
      return 1;
    }
    /* Returned as soon as the read completed, not at the end of 0.5 s. */
    own = spun == 1 && took < 0.25 && pthread_equal (r.thread, pthread_self ());
  }
  if (!own) {
    fprintf (stderr, "vublk_probe: a spinning thread never completed its "
             "read itself in 20 tries\n");
    return 1;
  }
  /* 2. Nothing to do: returns 0 after its time. */
  t = now ();
  if (vublk_aio_spin (dev, 50000000ull, -1) != 0 || now () - t < 0.04) {
    fprintf (stderr, "vublk_probe: an idle spin did not time out\n");
    return 1;
  }
  /* 3. After that, completions are signalled again: a read completes on
   * the completion thread without anyone spinning. */
  if (submit_read (dev, buf, 2, &r))
    return 1;
  if (wait_flag (&r.done, 5) != 1 || pthread_equal (r.thread, pthread_self ())) {
    fprintf (stderr, "vublk_probe: no completion after a spin: "
             "notifications were left off\n");
    return 1;
  }
  /* 4. A readable fd ends the spin at once. */
  efd = eventfd (0, EFD_CLOEXEC);
  if (efd < 0 || write (efd, &one, sizeof one) != sizeof one)
    return 1;
  t = now ();
  if (vublk_aio_spin (dev, 2000000000ull, efd) != 1 || now () - t > 1) {
    fprintf (stderr, "vublk_probe: a readable fd did not end the spin\n");
    return 1;
  }
  close (efd);
  if (submit_read (dev, buf, 3, &r) || wait_flag (&r.done, 5) != 1) {
    fprintf (stderr, "vublk_probe: no completion after an fd spin\n");
    return 1;
  }
  vublk_buf_free (dev, buf);
  vublk_close (dev);
  return 0;
}

static struct vublk *strand_dev;

/* A thread whose synchronous read claims a queue, then stays idle. */
static void *
claiming_reader (void *arg)
{
  char buf[4096];

  (void) arg;
  if (vublk_pread (strand_dev, buf, sizeof buf, 8192) != (ssize_t) sizeof buf)
    fprintf (stderr, "vublk_probe: the claiming read failed: %s\n",
             vublk_get_error ());
  pause ();
  return NULL;
}

/* thread_queues, 2 queues, against a backend that never answers the first
 * request: this thread's read is in flight (stalled) on a shared queue
 * when another thread's synchronous read claims a queue for it and then
 * idles.  The stalled read must still complete, after the request
 * timeout's reconnect and replay: a claim that took its queue would leave
 * the replayed answer for an owner that never harvests again. */
static int
strand_check (const char *sock)
{
  struct vublk_options opts;
  struct spin_read r;
  pthread_t t;
  void *buf;

  vublk_options_init (&opts);
  opts.num_queues = 2;
  opts.thread_queues = true;
  opts.request_timeout = 1;
  opts.reconnect_timeout = 5;
  strand_dev = vublk_open (sock, &opts);
  if (!strand_dev || !(buf = vublk_buf_alloc (strand_dev, 4096))) {
    fprintf (stderr, "vublk_probe: %s\n", vublk_get_error ());
    return 1;
  }
  if (submit_read (strand_dev, buf, 1, &r))
    return 1;
  usleep (100000);       /* in flight, stalled */
  pthread_create (&t, NULL, claiming_reader, NULL);
  if (wait_flag (&r.done, 10) != 1) {
    fprintf (stderr, "vublk_probe: a read in flight when another thread "
             "claimed a queue did not complete within 10 s\n");
    return 1;
  }
  _exit (0);             /* the claiming thread sleeps for ever */
}

static int saw_reconnecting;

static void
watch_reconnects (void *opaque, int level, const char *msg)
{
  (void) opaque;
  (void) level;
  if (strstr (msg, "reconnecting"))
    __atomic_store_n (&saw_reconnecting, 1, __ATOMIC_RELEASE);
}

/* Opens the device and signals readiness (SOCKET.ready); once the
 * library says it is reconnecting (the script restarts the backend, and
 * VUBLK_TEST_RECONNECT_PAUSE_MS holds the reconnect between its handshake
 * and its state change), waits 700 ms and closes the device, which must
 * return: the reconnect must not overwrite the closing state. */
static int
close_during_reconnect (const char *sock)
{
  struct vublk_options opts;
  struct vublk *dev;
  double t;

  vublk_options_init (&opts);
  opts.log = watch_reconnects;
  opts.log_level = VUBLK_LOG_INFO;
  if (!(dev = vublk_open (sock, &opts))) {
    fprintf (stderr, "vublk_probe: %s\n", vublk_get_error ());
    return 1;
  }
  signal_ready (sock);
  if (wait_flag (&saw_reconnecting, 20) != 1) {
    fprintf (stderr, "vublk_probe: no reconnect within 20 s\n");
    return 1;
  }
  usleep (700000);
  t = now ();
  vublk_close (dev);
  printf ("vublk_close during a reconnect returned after %.1f s\n",
          now () - t);
  return 0;
}

static struct vublk *stream_dev;
static int stream_stop;
static void *stream_buf[2];

/* A read whose callback submits the next one until stream_stop: a stream
 * that keeps its queue busy. */
static void
stream_next (void *opaque, int result)
{
  struct vublk_io io = { .op = VUBLK_OP_READ, .len = 4096, .cb = stream_next,
                         .opaque = opaque };

  (void) result;
  if (__atomic_load_n (&stream_stop, __ATOMIC_ACQUIRE))
    return;
  io.buf = opaque;
  vublk_aio_submit (stream_dev, &io);
}

/* Starts a stream from this thread (on the queue its thread picks). */
static void *
stream_starter (void *arg)
{
  stream_next (arg, 0);
  return NULL;
}

static int sync_read_done;

static void *
sync_reader (void *arg)
{
  char buf[512];

  (void) arg;
  if (vublk_pread (stream_dev, buf, sizeof buf, 0) == (ssize_t) sizeof buf)
    __atomic_store_n (&sync_read_done, 1, __ATOMIC_RELEASE);
  return NULL;
}

/* thread_queues, 2 queues, each kept busy by a stream of asynchronous
 * reads whose callbacks resubmit: a third thread's synchronous read must
 * return within 5 s (it must not claim a busy queue and wait for the
 * stream there to end). */
static int
streams_check (const char *sock)
{
  struct vublk_options opts;
  pthread_t t[3];
  int ok;

  vublk_options_init (&opts);
  opts.num_queues = 2;
  opts.thread_queues = true;
  stream_dev = vublk_open (sock, &opts);
  if (!stream_dev) {
    fprintf (stderr, "vublk_probe: %s\n", vublk_get_error ());
    return 1;
  }
  for (int i = 0; i < 2; i++) {
    stream_buf[i] = vublk_buf_alloc (stream_dev, 4096);
    pthread_create (&t[i], NULL, stream_starter, stream_buf[i]);
    pthread_join (t[i], NULL);
  }
  usleep (100000);
  pthread_create (&t[2], NULL, sync_reader, NULL);
  ok = wait_flag (&sync_read_done, 5) == 1;
  __atomic_store_n (&stream_stop, 1, __ATOMIC_RELEASE);
  if (!ok) {
    fprintf (stderr, "vublk_probe: a synchronous read beside two busy "
             "streams did not return within 5 s\n");
    _exit (1);
  }
  pthread_join (t[2], NULL);
  vublk_close (stream_dev);
  return 0;
}

static struct vublk *fallback_dev;
static int fallback_stop, fallback_b_ready, fallback_c_ready;

/* Claims a queue through a synchronous read, then idles. */
static void *
sync_claimer (void *arg)
{
  char buf[512];

  (void) arg;
  if (vublk_pread (fallback_dev, buf, sizeof buf, 0) != (ssize_t) sizeof buf)
    fprintf (stderr, "vublk_probe: the claiming read failed: %s\n",
             vublk_get_error ());
  __atomic_store_n (&fallback_b_ready, 1, __ATOMIC_RELEASE);
  while (!__atomic_load_n (&fallback_stop, __ATOMIC_ACQUIRE))
    usleep (10000);
  return NULL;
}

/* Opens a queue handle and processes it until told to stop. */
static void *
driving_owner (void *arg)
{
  struct vublk_tq *tq = vublk_tq_open (fallback_dev);

  (void) arg;
  if (!tq) {
    fprintf (stderr, "vublk_probe: vublk_tq_open: %s\n", vublk_get_error ());
    return NULL;
  }
  __atomic_store_n (&fallback_c_ready, 1, __ATOMIC_RELEASE);
  while (!__atomic_load_n (&fallback_stop, __ATOMIC_ACQUIRE))
    vublk_tq_process (tq, 0, 10 * 1000000ll);
  vublk_tq_close (tq);
  return NULL;
}

/* thread_queues, 2 queues: one claimed by a thread's synchronous read
 * (it then idles), the other by a vublk_tq_open owner that processes it.
 * Every queue is driven, so this thread's asynchronous read must go to
 * the owner that processes, not to the idle claimer's queue, and complete
 * within 5 s. */
static int
fallback_check (const char *sock)
{
  struct vublk_options opts;
  struct spin_read r;
  pthread_t b, c;
  void *buf;
  int ok;

  vublk_options_init (&opts);
  opts.num_queues = 2;
  opts.thread_queues = true;
  fallback_dev = vublk_open (sock, &opts);
  if (!fallback_dev || !(buf = vublk_buf_alloc (fallback_dev, 4096))) {
    fprintf (stderr, "vublk_probe: %s\n", vublk_get_error ());
    return 1;
  }
  pthread_create (&b, NULL, sync_claimer, NULL);
  while (!__atomic_load_n (&fallback_b_ready, __ATOMIC_ACQUIRE))
    usleep (1000);
  pthread_create (&c, NULL, driving_owner, NULL);
  while (!__atomic_load_n (&fallback_c_ready, __ATOMIC_ACQUIRE))
    usleep (1000);
  if (submit_read (fallback_dev, buf, 1, &r))
    return 1;
  ok = wait_flag (&r.done, 5) == 1;
  __atomic_store_n (&fallback_stop, 1, __ATOMIC_RELEASE);
  pthread_join (b, NULL);
  pthread_join (c, NULL);
  if (!ok) {
    fprintf (stderr, "vublk_probe: with every queue driven, a read went to "
             "the queue of a thread that claimed it for synchronous calls "
             "and idles: not completed within 5 s\n");
    _exit (1);
  }
  vublk_buf_free (fallback_dev, buf);
  vublk_close (fallback_dev);
  return 0;
}

/* The modes that take the socket alone. */
static const struct {
  const char *name;
  int (*run) (const char *sock);
} socket_modes[] = {
  { "spin", spin_check },
  { "plug", plug_check },
  { "signals", signals_check },
  { "fd-check", fd_check },
  { "strand", strand_check },
  { "fallback", fallback_check },
  { "streams", streams_check },
  { "close-during-reconnect", close_during_reconnect },
};

int
main (int argc, char **argv)
{
  for (size_t i = 0; i < sizeof socket_modes / sizeof socket_modes[0]; i++)
    if (argc == 3 && !strcmp (argv[1], socket_modes[i].name))
      return socket_modes[i].run (argv[2]);
  if ((argc == 5 || (argc == 6 && !strcmp (argv[5], "driven")))
      && !strcmp (argv[1], "expect-eio"))
    return expect_eio (argv[2], atof (argv[3]), atof (argv[4]), argc == 6);
  if (argc == 4 && !strcmp (argv[1], "wait-resize"))
    return wait_resize (argv[2], strtoull (argv[3], NULL, 0));
  fprintf (stderr, "usage: vublk_probe expect-eio SOCKET RECONNECT REQUEST "
           "[driven] | wait-resize SOCKET SIZE");
  for (size_t i = 0; i < sizeof socket_modes / sizeof socket_modes[0]; i++)
    fprintf (stderr, " | %s SOCKET", socket_modes[i].name);
  fputc ('\n', stderr);
  return 2;
}
