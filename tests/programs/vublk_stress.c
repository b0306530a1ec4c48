/* vublk_stress — drives libvublk against a real backend for the
 * integration tests and checks every byte.
 *
 *   vublk_stress SOCKET SHADOW [--threads N] [--ops N] [--seed N]
 *                [--queues N] [--seconds S] [--reconnect-timeout S]
 *                [--poll] [--spin US] [--readonly-check]
 *                [--memory normal|hugetlb] [--ring split|packed|auto]
 *                [--driven | --thread-queues]
 *
 * --driven: each worker claims a queue (vublk_tq_open, which must
 * succeed: use --threads <= --queues) and its synchronous calls run to
 * completion on it; --thread-queues: the library claims one per thread
 * on first use, the threads beyond the queue count sharing the rest.
 *
 * SHADOW is a file holding what the device holds now (a copy of the
 * backing image); it is updated with every write so the script can `cmp`
 * the backing image against it afterwards.  Each thread owns an
 * interleaved set of 64 KiB stripes and issues random reads, writes,
 * write-zeroes and discards of random sizes at random (unaligned)
 * offsets inside them, checking reads against the shadow.  Then all
 * threads write disjoint bytes of the same blocks at once (the
 * read-modify-write tearing check), then get-id and flush.  Exit 0 only if
 * every check passed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vublk.h"

#define STRIPE (64u * 1024)

static struct vublk *dev;
static uint8_t *shadow;
static uint64_t size;
static unsigned nthreads = 4;
static unsigned ops = 2000;
static unsigned seed = 1;
static bool can_discard_zero_check;
static bool can_write_zeroes;
static double seconds;           /* > 0: run ops until this much time */
static time_t deadline;

static void
die (const char *what)
{
  fprintf (stderr, "vublk_stress: %s: %s\n", what, vublk_get_error ());
  exit (1);
}

static uint64_t
rnd (unsigned *s, uint64_t n)
{
  return n ? (uint64_t) rand_r (s) * RAND_MAX % n : 0;
}

/* A random [off, off+len) inside one of thread t's stripes. */
static void
pick_range (unsigned *s, unsigned t, uint64_t *off, size_t *len)
{
  uint64_t stripes = size / STRIPE;
  uint64_t mine = (stripes - t + nthreads - 1) / nthreads;
  uint64_t stripe = (rnd (s, mine) * nthreads + t) * STRIPE;
  unsigned kind = rnd (s, 4);
  size_t l = kind == 0 ? 1 + rnd (s, 16) : kind == 1 ? 513
             : kind == 2 ? 512 * (1 + rnd (s, 16)) : 1 + rnd (s, STRIPE);
  uint64_t o = rnd (s, STRIPE - l + 1);

  if (l > STRIPE)
    l = STRIPE;
  *off = stripe + o;
  *len = l;
}

static bool driven;

static void *
worker (void *arg)
{
  unsigned t = (uintptr_t) arg, s = seed * 7919 + t;
  uint8_t *buf = malloc (STRIPE), *pbuf = vublk_buf_alloc (dev, STRIPE);
  struct vublk_tq *tq = NULL;

  if (!buf || !pbuf)
    die ("allocating buffers");
  if (driven && !(tq = vublk_tq_open (dev)))
    die ("vublk_tq_open");
  for (unsigned i = 0; seconds > 0 ? time (NULL) < deadline : i < ops; i++) {
    uint64_t off;
    size_t len;
    unsigned op = rnd (&s, 10);
    /* Alternate heap (bounced) and pool (zero copy) buffers. */
    uint8_t *b = i & 1 ? pbuf : buf;

    pick_range (&s, t, &off, &len);
    if (op < 4) {
      for (size_t k = 0; k < len; k++)
        b[k] = rand_r (&s);
      if (vublk_pwrite (dev, b, len, off, i % 7 == 0 ? VUBLK_F_FUA : 0)
          != (ssize_t) len)
        die ("pwrite");
      memcpy (shadow + off, b, len);
    }
    else if (op < 8) {
      if (vublk_pread (dev, b, len, off) != (ssize_t) len)
        die ("pread");
      if (memcmp (b, shadow + off, len)) {
        fprintf (stderr, "vublk_stress: read of %zu at %llu differs from "
                 "shadow\n", len, (unsigned long long) off);
        exit (1);
      }
    }
    else if (op == 8 && can_write_zeroes) {
      if (vublk_write_zeroes (dev, off, len, i & 2 ? VUBLK_F_UNMAP : 0))
        die ("write_zeroes");
      memset (shadow + off, 0, len);
    }
    else if (op == 8) {
      /* No write-zeroes (DPDK's example): refused, nothing changes. */
      if (vublk_write_zeroes (dev, off, len, 0) != -ENOTSUP)
        die ("write_zeroes without the feature");
    }
    else if (can_discard_zero_check) {
      /* Discarded blocks read back as zeroes on a file backend; only
       * whole blocks inside the range are discarded. */
      uint64_t a = (off + 4095) & ~4095ull, e = (off + len) & ~4095ull;
      if (a < e) {
        if (vublk_discard (dev, a, e - a))
          die ("discard");
        memset (shadow + a, 0, e - a);
      }
    }
  }
  /* On a driven queue too (a flush without FLUSH never reaches the ring,
   * and must still complete on the driving thread). */
  if (vublk_flush (dev))
    die ("flush from a worker");
  free (buf);
  vublk_buf_free (dev, pbuf);
  vublk_tq_close (tq);
  return NULL;
}

struct tear_arg {
  unsigned t;
  uint64_t base;
};

/* Thread t writes bytes [t*100 + k*N*100 ...] of a shared region so that
 * every write shares blocks with the others' but no bytes. */
static void *
tear_worker (void *arg)
{
  struct tear_arg *a = arg;
  uint8_t piece[100];

  for (unsigned k = 0; k < 64; k++) {
    uint64_t off = a->base + (k * nthreads + a->t) * sizeof piece;
    memset (piece, 0x40 + a->t, sizeof piece);
    piece[0] = k;
    if (vublk_pwrite (dev, piece, sizeof piece, off, 0) != sizeof piece)
      die ("tear pwrite");
    memcpy (shadow + off, piece, sizeof piece);
  }
  return NULL;
}

/* The harvest API: 64 callback-less reads of distinct 4 KiB blocks, waited
 * for with poll() on the completion fd, each checked by user_data. */
static void
check_harvest_api (void)
{
  enum { N = 64, BS = 4096 };
  uint8_t *bufs = vublk_buf_alloc (dev, N * BS);
  bool seen[N] = { false };
  unsigned got = 0;

  if (!bufs)
    die ("buf_alloc for harvest check");
  for (unsigned i = 0; i < N; i++) {
    struct vublk_io io = {
      .op = VUBLK_OP_READ, .offset = (uint64_t) i * 3 * BS + 512 * (i & 1),
      .buf = bufs + i * BS, .len = BS, .user_data = 1000 + i,
    };
    if (vublk_aio_submit (dev, &io))
      die ("aio_submit");
  }
  while (got < N) {
    struct pollfd pfd = { .fd = vublk_aio_completion_fd (dev),
                          .events = POLLIN };
    struct vublk_completion c[16];
    int n;

    if (poll (&pfd, 1, 10000) != 1) {
      fprintf (stderr, "vublk_stress: completion fd never became readable "
               "(%u of %u harvested)\n", got, N);
      exit (1);
    }
    n = vublk_aio_harvest (dev, c, 16);
    for (int k = 0; k < n; k++) {
      unsigned i = c[k].user_data - 1000;
      if (i >= N || seen[i] || c[k].result != 0) {
        fprintf (stderr, "vublk_stress: bad completion user_data %llu "
                 "result %d\n", (unsigned long long) c[k].user_data,
                 c[k].result);
        exit (1);
      }
      seen[i] = true;
      if (memcmp (bufs + i * BS,
                  shadow + (uint64_t) i * 3 * BS + 512 * (i & 1), BS)) {
        fprintf (stderr, "vublk_stress: harvested read %u differs\n", i);
        exit (1);
      }
    }
    got += n;
  }
  vublk_buf_free (dev, bufs);
  printf ("harvest API and completion fd: ok\n");
}

static void
check_whole_device (void)
{
  size_t chunk = 1 << 20;
  uint8_t *buf = malloc (chunk);

  for (uint64_t off = 0; off < size; off += chunk) {
    size_t len = size - off < chunk ? size - off : chunk;
    if (vublk_pread (dev, buf, len, off) != (ssize_t) len)
      die ("pread (final check)");
    if (memcmp (buf, shadow + off, len)) {
      fprintf (stderr, "vublk_stress: device differs from shadow in the "
               "MiB at %llu\n", (unsigned long long) off);
      exit (1);
    }
  }
  free (buf);
}

static void
readonly_check (void)
{
  char b[512] = { 0 };
  struct vublk_info info;
  ssize_t r;

  vublk_get_info (dev, &info);
  if (!info.readonly) {
    fprintf (stderr, "vublk_stress: device is not read-only\n");
    exit (1);
  }
  r = vublk_pwrite (dev, b, sizeof b, 0, 0);
  if (r != -EROFS) {
    fprintf (stderr, "vublk_stress: write to read-only device returned "
             "%zd, expected -EROFS\n", r);
    exit (1);
  }
  if (vublk_write_zeroes (dev, 0, 512, 0) != -EROFS
      || vublk_discard (dev, 0, 4096) != -EROFS) {
    fprintf (stderr, "vublk_stress: zero/discard on read-only device did "
             "not fail with EROFS\n");
    exit (1);
  }
  if (vublk_pread (dev, b, sizeof b, 0) != sizeof b)
    die ("read from read-only device");
  printf ("read-only device refuses writes: ok\n");
}

int
main (int argc, char **argv)
{
  struct vublk_options opts;
  bool ro_check = false;
  pthread_t th[64];
  struct tear_arg ta[64];
  char serial[21];
  struct stat st;
  uint8_t past_end[16];
  int fd;

  vublk_options_init (&opts);
  if (argc < 3) {
    fprintf (stderr, "usage: vublk_stress SOCKET SHADOW [options]\n");
    return 2;
  }
  for (int i = 3; i < argc; i++) {
    if (!strcmp (argv[i], "--threads") && i + 1 < argc)
      nthreads = atoi (argv[++i]);
    else if (!strcmp (argv[i], "--ops") && i + 1 < argc)
      ops = atoi (argv[++i]);
    else if (!strcmp (argv[i], "--seed") && i + 1 < argc)
      seed = atoi (argv[++i]);
    else if (!strcmp (argv[i], "--queues") && i + 1 < argc)
      opts.num_queues = atoi (argv[++i]);
    else if (!strcmp (argv[i], "--seconds") && i + 1 < argc)
      seconds = atof (argv[++i]);
    else if (!strcmp (argv[i], "--reconnect-timeout") && i + 1 < argc)
      opts.reconnect_timeout = atof (argv[++i]);
    else if (!strcmp (argv[i], "--poll"))
      opts.poll = true;
    else if (!strcmp (argv[i], "--spin") && i + 1 < argc)
      opts.spin_us = atoi (argv[++i]);
    else if (!strcmp (argv[i], "--readonly-check"))
      ro_check = true;
    else if (!strcmp (argv[i], "--driven"))
      driven = true;
    else if (!strcmp (argv[i], "--thread-queues"))
      opts.thread_queues = true;
    else if (!strcmp (argv[i], "--ring") && i + 1 < argc) {
      const char *r = argv[++i];
      opts.ring = !strcmp (r, "split") ? VUBLK_RING_SPLIT
                  : !strcmp (r, "packed") ? VUBLK_RING_PACKED
                  : VUBLK_RING_AUTO;
    }
    else if (!strcmp (argv[i], "--memory") && i + 1 < argc)
      opts.memory = !strcmp (argv[++i], "hugetlb") ? VUBLK_MEMORY_HUGETLB
                                                   : VUBLK_MEMORY_NORMAL;
    else {
      fprintf (stderr, "vublk_stress: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (nthreads < 1 || nthreads > 64)
    nthreads = 4;

  dev = vublk_open (argv[1], &opts);
  if (!dev)
    die ("open");
  size = vublk_get_size (dev);
  if (ro_check) {
    readonly_check ();
    vublk_close (dev);
    return 0;
  }

  fd = open (argv[2], O_RDWR);
  if (fd == -1 || fstat (fd, &st) == -1 || (uint64_t) st.st_size != size) {
    fprintf (stderr, "vublk_stress: %s must be a copy of the %llu-byte "
             "device\n", argv[2], (unsigned long long) size);
    return 1;
  }
  shadow = mmap (NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (shadow == MAP_FAILED) {
    perror ("mmap shadow");
    return 1;
  }
  {
    struct vublk_info info;
    vublk_get_info (dev, &info);
    can_discard_zero_check = info.can_discard;
    can_write_zeroes = info.can_write_zeroes;
    printf ("device: %llu bytes, block %u, %u queue(s), serial ",
            (unsigned long long) size, info.logical_block_size,
            info.num_queues);
  }
  /* DPDK's example answers GET_ID with IOERR: a failure is reported, a
   * success must be a sane string (qemu: "vhost_user_blk"). */
  if (vublk_get_serial (dev, serial)) {
    printf ("none (%s)\n", vublk_get_error ());
    strcpy (serial, "-");
  }
  else
    printf ("'%s'\n", serial);
  if (strlen (serial) == 0 || strlen (serial) > 20) {
    fprintf (stderr, "vublk_stress: bad serial\n");
    return 1;
  }

  /* Past the end: reads are short, writes fail, nothing wraps. */
  if (vublk_pread (dev, past_end, sizeof past_end, size - 8) != 8
      || memcmp (past_end, shadow + size - 8, 8)
      || vublk_pread (dev, past_end, sizeof past_end, size) != 0
      || vublk_pwrite (dev, past_end, sizeof past_end, size - 8, 0) != -ENOSPC
      || vublk_write_zeroes (dev, size, 512, 0)
         != (can_write_zeroes ? -ENOSPC : -ENOTSUP)) {
    fprintf (stderr, "vublk_stress: past-the-end handling is wrong\n");
    return 1;
  }

  deadline = time (NULL) + (time_t) seconds;
  check_harvest_api ();
  for (unsigned t = 0; t < nthreads; t++)
    pthread_create (&th[t], NULL, worker, (void *) (uintptr_t) t);
  for (unsigned t = 0; t < nthreads; t++)
    pthread_join (th[t], NULL);
  printf ("random I/O from %u threads: ok\n", nthreads);

  for (unsigned t = 0; t < nthreads; t++) {
    ta[t] = (struct tear_arg) { t, size / 2 + 3 };
    pthread_create (&th[t], NULL, tear_worker, &ta[t]);
  }
  for (unsigned t = 0; t < nthreads; t++)
    pthread_join (th[t], NULL);

  if (vublk_flush (dev))
    die ("flush");
  check_whole_device ();
  printf ("overlapping unaligned writes and whole-device compare: ok\n");
  msync (shadow, size, MS_SYNC);
  {
    struct vublk_info info;
    vublk_get_info (dev, &info);
    printf ("reconnects: %llu\n", (unsigned long long) info.reconnects);
  }
  vublk_close (dev);
  return 0;
}
