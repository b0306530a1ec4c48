/* bench.c — `vublk bench`: keeps QD requests in flight per queue; each
 * completion callback records its latency and submits the next request
 * from completion context.  By default one thread per queue drives it
 * (vublk_tq_*): completions run on that thread, with no completion
 * thread between it and the backend; --completion-thread measures the
 * shared path instead.  Reports IOPS, MiB/s, latency percentiles and the
 * client's CPU time per request. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* Log-linear latency histogram: 2^k .. 2^(k+1) ns split in 16 steps. */
#define SUB 16
#define BUCKETS (64 * SUB)

enum rw { RANDREAD, RANDWRITE, READ_SEQ, WRITE_SEQ, RANDRW };

/* Completions counted: a latency histogram, requests and errors. */
struct counts {
  uint64_t hist[BUCKETS];
  uint64_t done, errors;
  /* Taken while counting, or NULL: a driving thread's own counts need
   * no lock, and a shared one cost every request a lock round trip on
   * the way to its successor. */
  pthread_mutex_t *lock;
};

struct bench {
  struct vublk *dev;
  enum rw rw;
  uint64_t bs, size, span;
  uint64_t blocks;              /* span / bs: the offsets to pick from */
  atomic_uint_fast64_t seq_next;
  atomic_bool stop;
  atomic_uint live;
  struct counts all;            /* the drivers' counts merged at the end */
  pthread_mutex_t lock;         /* all, while completion threads count */
};

struct job {
  struct bench *b;
  struct vublk_tq *tq;          /* the driven queue, or NULL */
  unsigned *live;               /* the driving thread's jobs still going */
  uint8_t *buf;
  uint64_t start_ns;
  uint64_t rnd;                 /* xorshift state, never 0 */
  struct counts *counts;        /* its driver's, or the shared ones */
};

static uint64_t
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static unsigned
bucket_of (uint64_t ns)
{
  unsigned k;

  if (ns < SUB)
    return ns;
  k = 63 - __builtin_clzll (ns);
  return k * SUB + (unsigned) ((ns >> (k - 4)) & (SUB - 1));
}

static double
bucket_value (unsigned b)
{
  unsigned k = b / SUB, s = b % SUB;

  if (b < SUB)
    return b;
  return ldexp (1.0 + s / (double) SUB, k);
}

static void submit_next (struct job *j, uint64_t now);

static void
complete (void *opaque, int result)
{
  struct job *j = opaque;
  struct bench *b = j->b;
  struct counts *c = j->counts;
  uint64_t now = now_ns ();

  if (c->lock)
    pthread_mutex_lock (c->lock);
  c->hist[bucket_of (now - j->start_ns)]++;
  c->done++;
  if (result)
    c->errors++;
  if (c->lock)
    pthread_mutex_unlock (c->lock);
  if (atomic_load (&b->stop) || result) {
    /* The job is the main thread's to free once live reaches 0: done
     * with it before that. */
    if (j->live)
      --*j->live;
    atomic_fetch_sub (&b->live, 1);
    return;
  }
  submit_next (j, now);
}

/* The job's next pseudo-random number (xorshift64). */
static uint64_t
next_random (struct job *j)
{
  j->rnd ^= j->rnd << 13;
  j->rnd ^= j->rnd >> 7;
  j->rnd ^= j->rnd << 17;
  return j->rnd;
}

/* Submits job j's next request; now is the time it is submitted at (the
 * completion's time when a callback submits: one clock read for both). */
static void
submit_next (struct job *j, uint64_t now)
{
  struct bench *b = j->b;
  uint64_t off, r = 0;
  bool write;

  if (b->rw == READ_SEQ || b->rw == WRITE_SEQ)
    off = (atomic_fetch_add (&b->seq_next, 1) % b->blocks) * b->bs;
  else {
    /* A block in [0, blocks) from the top bits, by multiplying (a
     * division here cost a request as much as the library's turn). */
    r = next_random (j);
    off = (uint64_t) (((unsigned __int128) r * b->blocks) >> 64) * b->bs;
  }
  write = b->rw == RANDWRITE || b->rw == WRITE_SEQ
          || (b->rw == RANDRW && (r & 1));
  struct vublk_io io = {
    .op = write ? VUBLK_OP_WRITE : VUBLK_OP_READ, .offset = off,
    .buf = j->buf, .len = b->bs, .cb = complete, .opaque = j,
  };
  j->start_ns = now;
  if ((j->tq ? vublk_tq_submit (j->tq, &io) : vublk_aio_submit (b->dev, &io))
      < 0) {
    fprintf (stderr, "vublk: bench: %s\n", vublk_get_error ());
    if (j->live)
      --*j->live;
    atomic_fetch_sub (&b->live, 1);
  }
}

/* One driving thread: claims a queue, starts its jobs and runs their
 * completions until they all stopped. */
struct driver {
  struct bench *b;
  struct job *jobs;
  unsigned njobs;
  pthread_t thread;
  int error;
  struct counts counts;         /* this thread's jobs' (no lock) */
};

static void *
drive (void *arg)
{
  struct driver *d = arg;
  struct vublk_tq *tq = vublk_tq_open (d->b->dev);
  unsigned live = d->njobs;

  if (!tq) {
    fprintf (stderr, "vublk: bench: %s\n", vublk_get_error ());
    d->error = 1;
    atomic_fetch_sub (&d->b->live, d->njobs);
    return NULL;
  }
  for (unsigned i = 0; i < d->njobs; i++) {
    d->jobs[i].tq = tq;
    d->jobs[i].counts = &d->counts;
    d->jobs[i].live = &live;
    submit_next (&d->jobs[i], now_ns ());
  }
  while (live > 0)
    if (vublk_tq_process (tq, 1, 100000000) < 0)
      break;
  vublk_tq_close (tq);
  return NULL;
}

static double
percentile (const struct bench *b, double p)
{
  uint64_t want = (uint64_t) ceil (b->all.done * p), seen = 0;

  for (unsigned i = 0; i < BUCKETS; i++) {
    seen += b->all.hist[i];
    if (seen >= want && b->all.hist[i])
      return bucket_value (i);
  }
  return 0;
}

static double
cpu_seconds (void)
{
  struct rusage ru;

  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
         + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* Blocks the stop signals the process does not ignore (stop_signals)
 * in the calling thread, and so in the driving threads it starts
 * afterwards: the run's wait (below) takes them instead.  Fills *set
 * with them. */
static void
block_stop_signals (sigset_t *set)
{
  stop_signals (set, true);
  pthread_sigmask (SIG_BLOCK, set, NULL);
}

/* How often wait_run looks whether any job is still going. */
#define LIVE_CHECK_NS 100000000ull

/* Waits s seconds (up to a day, parse_seconds' bound), until one of the
 * signals in set arrives, or until no job is left going (*live is 0:
 * each stopped at its first error).  Returns that signal, or 0.
 * Unblocks them on the way out, so that a second Ctrl-C while the run
 * drains ends the process at once. */
static int
wait_run (double s, const sigset_t *set, atomic_uint *live)
{
  uint64_t end = now_ns () + (uint64_t) (s * 1e9), now;
  int sig = 0;

  while ((now = now_ns ()) < end && atomic_load (live) > 0) {
    uint64_t wait = end - now < LIVE_CHECK_NS ? end - now : LIVE_CHECK_NS;
    struct timespec left = { .tv_sec = (time_t) (wait / 1000000000),
                             .tv_nsec = (long) (wait % 1000000000) };

    sig = sigtimedwait (set, NULL, &left);
    if (sig > 0)
      break;
    sig = 0;            /* EAGAIN: time is up; EINTR: look again */
  }
  pthread_sigmask (SIG_UNBLOCK, set, NULL);
  return sig;
}

static void
usage (FILE *f)
{
  fprintf (f, "Usage: vublk bench [OPTIONS] SOCKET\n"
           "Measures the device at SOCKET.  Write workloads overwrite its "
           "data.\n\n"
           "  --rw MODE                randread (default), randwrite, read, "
           "write, randrw\n"
           "  --bs N                   block size (default 4k; k/M suffixes)\n"
           "  --qd N                   requests in flight per queue "
           "(default 32)\n"
           "  --time S                 seconds to run (default 5; Ctrl-C ends "
           "it early\n"
           "                           with the figures so far)\n"
           "  --size N                 limit I/O to the first N bytes\n"
           "  --completion-thread      completions on the library's threads "
           "(default:\n"
           "                           one thread per queue drives it)\n%s",
           device_options_help ());
}

/* What bench's own options set (take_option). */
struct bench_args {
  struct bench *b;
  const char *mode;
  uint64_t qd, limit;
  double seconds;
  bool driven;
};

enum { OPT_RW = 256, OPT_BS, OPT_QD, OPT_TIME, OPT_SIZE,
       OPT_COMPLETION_THREAD };
static const struct option own[] = {
  { "rw", required_argument, NULL, OPT_RW },
  { "bs", required_argument, NULL, OPT_BS },
  { "qd", required_argument, NULL, OPT_QD },
  { "time", required_argument, NULL, OPT_TIME },
  { "size", required_argument, NULL, OPT_SIZE },
  { "completion-thread", no_argument, NULL, OPT_COMPLETION_THREAD },
  { NULL, 0, NULL, 0 },
};

/* Takes bench's own options (parse_command_line) into the bench_args at
 * opaque, dying with a usage error on a bad value. */
static void
take_option (void *opaque, int code, const char *val)
{
  struct bench_args *a = opaque;

  switch (code) {
  case OPT_RW:
    a->mode = val;
    if (!strcmp (val, "randread")) a->b->rw = RANDREAD;
    else if (!strcmp (val, "randwrite")) a->b->rw = RANDWRITE;
    else if (!strcmp (val, "read")) a->b->rw = READ_SEQ;
    else if (!strcmp (val, "write")) a->b->rw = WRITE_SEQ;
    else if (!strcmp (val, "randrw")) a->b->rw = RANDRW;
    else
      die (EXIT_USAGE, "bench: --rw: '%s' is not randread, randwrite, "
           "read, write or randrw", val);
    break;
  case OPT_BS:
    a->b->bs = parse_size ("--bs", val, 512, 16 << 20);
    if (a->b->bs % 512)
      die (EXIT_USAGE, "bench: --bs: %s is not a multiple of 512", val);
    break;
  case OPT_QD:
    a->qd = parse_count ("--qd", val, 1, 1024);
    break;
  case OPT_TIME:
    a->seconds = parse_seconds ("--time", val);
    if (a->seconds <= 0)
      die (EXIT_USAGE, "bench: --time: '%s' is not a number of seconds "
           "above 0 (up to 86400)", val);
    break;
  case OPT_SIZE:
    a->limit = parse_size ("--size", val, 512, UINT64_MAX);
    break;
  case OPT_COMPLETION_THREAD:
    a->driven = false;
    break;
  }
}

int
cmd_bench (int argc, char **argv)
{
  struct vublk_options o;
  struct vublk_info info;
  struct bench b = { .rw = RANDREAD, .bs = 4096 };
  struct bench_args args = {
    .b = &b, .mode = "randread", .qd = 32, .seconds = 5, .driven = true,
  };
  const char *socket, *mode;
  uint64_t qd, limit;
  double seconds, cpu0, cpu1, t0, t1;
  struct job *jobs;
  struct driver *drivers = NULL;
  unsigned total;
  bool driven;
  sigset_t stop_set;
  int interrupted;

  device_options_init (&o);
  socket = only_socket (&(struct command_line) {
      .command = "vublk bench", .prefix = "bench: ", .own = own,
      .usage = usage, .option = take_option, .opaque = &args,
    }, argc, argv, &o);
  mode = args.mode;
  qd = args.qd;
  limit = args.limit;
  seconds = args.seconds;
  driven = args.driven;

  b.dev = open_device (socket, &o);
  vublk_get_info (b.dev, &info);
  if (b.rw != RANDREAD && b.rw != READ_SEQ && info.readonly)
    die (1, "bench: %s: device is read-only", socket);
  if (b.bs % info.logical_block_size)
    die (EXIT_USAGE, "bench: --bs %" PRIu64 " is not a multiple of the "
         "device's %u-byte blocks", b.bs, info.logical_block_size);
  b.size = info.size;
  b.span = limit && limit < b.size ? limit : b.size;
  if (limit > b.size)
    fprintf (stderr, "vublk: bench: warning: --size %" PRIu64 " is larger "
             "than the device (%" PRIu64 " bytes): the whole device is "
             "used\n", limit, b.size);
  if (qd > info.queue_depth)
    fprintf (stderr, "vublk: bench: warning: --qd %" PRIu64 " is more than "
             "a queue holds in flight (%u; --queue-size sets it): the rest "
             "wait in the library, and count in the latency\n", qd,
             info.queue_depth);
  if (limit && limit < b.bs)
    die (EXIT_USAGE, "bench: --size %" PRIu64 " is smaller than --bs %"
         PRIu64, limit, b.bs);
  if (b.span < b.bs)
    die (1, "bench: device (%" PRIu64 " bytes) is smaller than --bs",
         b.span);
  b.blocks = b.span / b.bs;
  if (b.rw != RANDREAD && b.rw != READ_SEQ)
    fprintf (stderr, "vublk: bench: warning: writing to %s overwrites its "
             "data\n", socket);

  total = qd * info.num_queues;
  jobs = calloc (total, sizeof *jobs);
  for (unsigned i = 0; i < total; i++) {
    jobs[i].b = &b;
    jobs[i].rnd = (i + 1) * 0x9e3779b97f4a7c15ull;
    jobs[i].counts = &b.all;
    jobs[i].buf = vublk_buf_alloc (b.dev, b.bs);
    if (!jobs[i].buf)
      die (1, "bench: %s (lower --qd or --bs)", vublk_get_error ());
    memset (jobs[i].buf, 0x5a, b.bs);
  }
  block_stop_signals (&stop_set);
  cpu0 = cpu_seconds ();
  t0 = now_ns () / 1e9;
  atomic_store (&b.live, total);
  pthread_mutex_init (&b.lock, NULL);
  b.all.lock = &b.lock;
  if (driven) {
    drivers = calloc (info.num_queues, sizeof *drivers);
    if (!drivers)
      die (1, "bench: out of memory");
    for (unsigned i = 0; i < info.num_queues; i++) {
      drivers[i] = (struct driver) { .b = &b, .jobs = jobs + i * qd,
                                     .njobs = qd };
      if (pthread_create (&drivers[i].thread, NULL, drive, &drivers[i]))
        die (1, "bench: cannot start a driving thread");
    }
  }
  else
    for (unsigned i = 0; i < total; i++)
      submit_next (&jobs[i], now_ns ());
  interrupted = wait_run (seconds, &stop_set, &b.live);
  atomic_store (&b.stop, true);
  for (unsigned ms = 0; atomic_load (&b.live) > 0; ms++) {
    if (interrupted && ms == 1000)
      say_still_draining ("bench");
    usleep (1000);
  }
  t1 = now_ns () / 1e9;
  for (unsigned i = 0; drivers && i < info.num_queues; i++) {
    pthread_join (drivers[i].thread, NULL);
    b.all.errors += drivers[i].error;
    for (unsigned k = 0; k < BUCKETS; k++)
      b.all.hist[k] += drivers[i].counts.hist[k];
    b.all.done += drivers[i].counts.done;
    b.all.errors += drivers[i].counts.errors;
  }
  free (drivers);
  cpu1 = cpu_seconds ();
  if (interrupted)
    fprintf (stderr, "vublk: bench: stopped by SIG%s after %.1f s: the "
             "figures below cover that time\n", sigabbrev_np (interrupted),
             t1 - t0);
  else if (t1 - t0 < seconds - 0.05)
    fprintf (stderr, "vublk: bench: every request stream stopped at an "
             "error after %.1f s of %.1f: the figures below cover that "
             "time\n", t1 - t0, seconds);

  printf ("%s bs=%" PRIu64 " qd=%" PRIu64 " queues=%u%s%s: %.0f IOPS, "
          "%.1f MiB/s\n", mode, b.bs, qd, info.num_queues,
          o.poll ? " poll" : "",
          driven ? " driven" : " completion-thread", b.all.done / (t1 - t0),
          b.all.done * (double) b.bs / (t1 - t0) / (1 << 20));
  printf ("latency: p50 %.1f us, p99 %.1f us, p99.9 %.1f us\n",
          percentile (&b, 0.5) / 1e3, percentile (&b, 0.99) / 1e3,
          percentile (&b, 0.999) / 1e3);
  printf ("client CPU: %.2f us per request\n",
          b.all.done ? (cpu1 - cpu0) * 1e6 / b.all.done : 0.0);
  if (b.all.errors)
    printf ("errors: %" PRIu64 "\n", b.all.errors);
  {
    struct vublk_info after;

    vublk_get_info (b.dev, &after);
    if (after.reconnects)
      printf ("reconnects: %" PRIu64 "\n", after.reconnects);
  }
  for (unsigned i = 0; i < total; i++)
    vublk_buf_free (b.dev, jobs[i].buf);
  free (jobs);
  vublk_close (b.dev);
  if (interrupted)
    return 128 + interrupted;
  return b.all.errors ? 1 : 0;
}
