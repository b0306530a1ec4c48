/* copy.c — `vublk copy [-p] [--allocated] SRC DST`: SRC and DST are
 * each a file, `-` (stdin/stdout) or `vhost-user:SOCKET`.
 *
 * A ring of 1 MiB buffers (in the device's shared pool, so device I/O is
 * zero copy) keeps up to RING requests in flight: reads from a device are
 * submitted ahead, writes to a device complete behind (the reader waits
 * for one only when every slot holds a write in flight), and the data is
 * written in order.  The copying thread drives a queue of that device
 * itself (vublk_tq_*): completions run on it, no thread hand-off.
 * SIGINT, SIGTERM or SIGHUP stops the reading; what was read is still
 * written (and a device flushed), so the destination holds a whole
 * prefix of the source, whose length is reported.  Chunks of zeroes (holes
 * of a source file are not even read) become write-zeroes requests or
 * holes in a file destination, unless --allocated.  The command line is
 * in copy_args.c, the endpoints in copy_endpoint.c, the stop signals in
 * copy_stop.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "copy.h"

#define RING 8

enum slot_state { EMPTY, READING, FULL, WRITING };

struct slot {
  uint8_t *buf;
  size_t len;
  uint64_t off;
  enum slot_state state;
  int result;
  bool from_pool;
  bool zero;             /* the chunk is all zero bytes... */
  bool unread;           /* ...and was never read into buf (a hole) */
  bool sent_as_zeroes;   /* its device write is a write-zeroes request */
};

/* What copy does with chunks of zeroes (--allocated: keep them
 * allocated in the destination). */
struct zero_policy {
  bool detect;           /* scan chunks read for zeroes: worth it */
  bool device_zeroes;    /* to a device: write-zeroes requests */
  uint32_t zero_flags;   /* their flags: VUBLK_F_UNMAP unless --allocated */
  bool file_holes;       /* to a file: skip them, leaving holes */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static struct slot ring[RING];

static void
io_done (void *opaque, int result)
{
  struct slot *s = opaque;

  pthread_mutex_lock (&lock);
  s->result = result;
  s->state = s->state == READING ? FULL : EMPTY;
  pthread_cond_broadcast (&changed);
  pthread_mutex_unlock (&lock);
}

/* The queue this thread drives, of device driven_dev (NULL: none), and
 * how long to sleep in it when the other endpoint is a device whose
 * completions arrive on a library thread. */
static struct vublk_tq *tq;
static struct vublk *driven_dev;
static int64_t tq_wait_ns = 100000000;

/* Submits io on dev: through the driven queue when it is dev's. */
static int
submit (struct vublk *dev, const struct vublk_io *io)
{
  return dev == driven_dev ? vublk_tq_submit (tq, io)
                           : vublk_aio_submit (dev, io);
}

/* True if slot s is in state want, or failed (read under the lock). */
static bool
slot_reached (struct slot *s, enum slot_state want, bool not)
{
  bool yes;

  pthread_mutex_lock (&lock);
  yes = s->result != 0 || (not ? s->state != want : s->state == want);
  pthread_mutex_unlock (&lock);
  return yes;
}

/* Waits until slot s is in state want (not: leaves it), or failed.  A
 * driving thread runs completions meanwhile; others sleep, in slices of
 * 100 ms either way so that a long wait after a stop signal is told. */
static void
wait_slot (struct slot *s, enum slot_state want, bool not)
{
  if (tq) {
    while (!slot_reached (s, want, not)) {
      if (vublk_tq_process (tq, 1, tq_wait_ns) < 0)
        die (1, "%s", vublk_get_error ());
      note_wait_after_stop ();
    }
    return;
  }
  pthread_mutex_lock (&lock);
  while (s->result == 0 && (not ? s->state == want : s->state != want)) {
    struct timespec until;

    clock_gettime (CLOCK_REALTIME, &until);
    until.tv_nsec += 100000000;
    if (until.tv_nsec >= 1000000000) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait (&changed, &lock, &until);
    pthread_mutex_unlock (&lock);
    note_wait_after_stop ();
    pthread_mutex_lock (&lock);
  }
  pthread_mutex_unlock (&lock);
}

static void
wait_state (struct slot *s, enum slot_state want)
{
  wait_slot (s, want, false);
}

/* Waits until slot s has no device write in flight; returns the result
 * of its last request (0 or -errno), read under the lock. */
static int
settle_slot (struct slot *s)
{
  int result;

  wait_slot (s, WRITING, true);
  pthread_mutex_lock (&lock);
  result = s->result;
  pthread_mutex_unlock (&lock);
  return result;
}

static void
progress (uint64_t done, uint64_t total, bool final)
{
  static double last;
  struct timespec ts;
  double now;
  int width = 40, filled;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  now = ts.tv_sec + ts.tv_nsec / 1e9;
  if (!final && now - last < 0.1)
    return;
  last = now;
  if (total == UINT64_MAX || total == 0) {
    fprintf (stderr, "\r%" PRIu64 " MiB copied", done >> 20);
  }
  else {
    filled = (int) (width * (double) done / total);
    fprintf (stderr, "\r[%.*s%*s] %5.1f%%",
             filled, "########################################",
             width - filled, "", 100.0 * done / total);
  }
  if (final)
    fputc ('\n', stderr);
}

/* True if the n bytes at b are all zero (n > 0); stops at the first
 * that is not, so data costs next to nothing. */
static bool
all_zero (const uint8_t *b, size_t n)
{
  return n > 0 && b[0] == 0 && memcmp (b, b + 1, n - 1) == 0;
}

/* Sets the zero policy for copying to dst: holes in a file destination
 * or write-zeroes requests to a device that takes them (deallocating
 * unless allocated); with neither, chunks are not scanned. */
static void
choose_zero_policy (struct zero_policy *z, const struct endpoint *dst,
                    bool allocated)
{
  struct vublk_info info = { .can_write_zeroes = false };

  if (dst->dev)
    vublk_get_info (dst->dev, &info);
  z->device_zeroes = info.can_write_zeroes;
  z->zero_flags = allocated ? 0 : VUBLK_F_UNMAP;
  z->file_holes = dst->holes_read_as_zero && !allocated;
  z->detect = z->device_zeroes || z->file_holes;
}

/* Starts (to a device) or does (to an fd) the write of slot s to dst: a
 * chunk of zeroes as a write-zeroes request or a hole if the policy z
 * says so, else its bytes (zeroed first if a hole was never read). */
static void
write_slot (const struct endpoint *dst, struct slot *s,
            const struct zero_policy *z)
{
  bool as_zeroes = s->zero && (dst->dev ? z->device_zeroes : z->file_holes);

  if (s->unread && !as_zeroes)
    memset (s->buf, 0, s->len);
  if (!dst->dev) {
    if (as_zeroes)
      skip_output (dst, s->len);
    else
      write_full (dst, s->buf, s->len);
    s->state = EMPTY;
    return;
  }
  s->state = WRITING;
  s->sent_as_zeroes = as_zeroes;
  struct vublk_io io = {
    .op = as_zeroes ? VUBLK_OP_WRITE_ZEROES : VUBLK_OP_WRITE,
    .offset = s->off, .buf = as_zeroes ? NULL : s->buf, .len = s->len,
    .flags = as_zeroes ? z->zero_flags : 0, .cb = io_done, .opaque = s,
  };
  if (submit (dst->dev, &io))
    die (1, "%s: %s of %zu bytes at offset %" PRIu64 ": %s", dst->name,
         as_zeroes ? "write-zeroes" : "write", s->len, s->off,
         vublk_get_error ());
}

/* Exits with an error naming the device write of slot s to dst if
 * result (its last request's, 0 or -errno) says it failed.  A backend
 * that offers write-zeroes but answers "unsupported" is tolerated: the
 * policy z stops using write-zeroes and the chunk is written again as
 * zeroes (waited for here). */
static void
check_write (const struct endpoint *dst, struct slot *s,
             struct zero_policy *z, int result)
{
  if (result == -ENOTSUP && s->sent_as_zeroes) {
    z->device_zeroes = false;
    s->result = 0;
    write_slot (dst, s, z);
    result = settle_slot (s);
  }
  if (result)
    die (1, "%s: %s at offset %" PRIu64 ": %s", dst->name,
         s->sent_as_zeroes ? "write-zeroes" : "write", s->off,
         strerror (-result));
}

/* Opens SRC and DST of a into *src and *dst, dying if DST is a device
 * too small for a source of known size, or read-only. */
static void
open_endpoints (const struct copy_args *a, struct endpoint *src,
                struct endpoint *dst)
{
  refuse_same_device (a->spec[0], a->spec[1]);
  open_endpoint (src, a->spec[0], false, &a->o);
  refuse_same_file (src, a->spec[1]);
  open_endpoint (dst, a->spec[1], true, &a->o);
  if (!dst->dev)
    return;
  if (src->size != UINT64_MAX && src->size > dst->size)
    die (1, "%s: source is %" PRIu64 " bytes, the device only %" PRIu64,
         dst->name, src->size, dst->size);
  struct vublk_info info;
  vublk_get_info (dst->dev, &info);
  if (info.readonly)
    die (1, "%s: device is read-only", dst->name);
}

/* Gives the ring its buffers: from pool_dev's shared pool (zero copy)
 * if they leave half of it for the library's bounce buffers and edge
 * blocks (a request must never wait for memory the ring holds), else
 * from the heap.  Returns the device whose pool they came from, or NULL. */
static struct vublk *
ring_alloc (struct vublk *pool_dev)
{
  if (pool_dev) {
    struct vublk_info pool_info;

    vublk_get_info (pool_dev, &pool_info);
    if ((uint64_t) RING * COPY_CHUNK > pool_info.pool_size / 2)
      pool_dev = NULL;
  }
  for (unsigned i = 0; i < RING; i++) {
    ring[i].buf = pool_dev ? vublk_buf_alloc (pool_dev, COPY_CHUNK) : NULL;
    ring[i].from_pool = ring[i].buf != NULL;
    if (!ring[i].buf)
      ring[i].buf = malloc (COPY_CHUNK);
    if (!ring[i].buf)
      die (1, "out of memory");
    ring[i].state = EMPTY;
  }
  return pool_dev;
}

/* Frees the ring's buffers (those of the pool back to pool_dev's). */
static void
ring_free (struct vublk *pool_dev)
{
  for (unsigned i = 0; i < RING; i++) {
    if (ring[i].from_pool)
      vublk_buf_free (pool_dev, ring[i].buf);
    else
      free (ring[i].buf);
  }
}

/* Starts filling slot s with the chunk of src at off: a device read is
 * submitted, a hole of a file skipped (the slot then holds zeroes it
 * never read), anything else read at once.  Returns false at the end of
 * src (the slot stays free); sets *last if this chunk ends it (a short
 * read). */
static bool
fill_slot (const struct endpoint *src, struct slot *s, uint64_t off,
           bool *last)
{
  s->off = off;
  s->result = 0;
  s->zero = s->unread = s->sent_as_zeroes = false;
  if (src->dev) {
    s->len = src->size - off < COPY_CHUNK ? src->size - off : COPY_CHUNK;
    if (s->len == 0)
      return false;
    s->state = READING;
    struct vublk_io io = {
      .op = VUBLK_OP_READ, .offset = s->off, .buf = s->buf,
      .len = s->len, .cb = io_done, .opaque = s,
    };
    if (submit (src->dev, &io))
      die (1, "%s", vublk_get_error ());
    return true;
  }
  if ((s->len = skip_hole (src, COPY_CHUNK)) > 0) {
    s->zero = s->unread = true;
    s->state = FULL;
    return true;
  }
  s->len = read_full (src, s->buf, COPY_CHUNK);
  if (s->len == 0)
    return false;
  s->state = FULL;
  *last = s->len < COPY_CHUNK;
  return true;
}

/* Flushes the device dst, submitted and waited for like the writes, so
 * that a flush stuck on a frozen backend after a stop signal is told as
 * well.  Dies naming dst if it fails. */
static void
flush_device (const struct endpoint *dst)
{
  struct slot flush = { .state = WRITING };
  struct vublk_io io = { .op = VUBLK_OP_FLUSH, .cb = io_done,
                         .opaque = &flush };

  if (submit (dst->dev, &io))
    die (1, "%s: flush: %s", dst->name, vublk_get_error ());
  int r = settle_slot (&flush);
  if (r)
    die (1, "%s: flush: %s", dst->name, strerror (-r));
}

int
cmd_copy (int argc, char **argv)
{
  struct copy_args a;
  struct endpoint src, dst;
  unsigned read_idx = 0, write_idx = 0;
  bool eof = false, too_large = false;
  struct zero_policy zeroes;
  uint64_t read_off = 0, written = 0;
  struct vublk *pool_dev;
  int stopped_by;

  parse_copy_args (argc, argv, &a);
  open_endpoints (&a, &src, &dst);
  choose_zero_policy (&zeroes, &dst, a.allocated);
  pool_dev = src.dev ? src.dev : dst.dev;
  if (pool_dev && (tq = vublk_tq_open (pool_dev)))
    driven_dev = pool_dev;
  if (src.dev && dst.dev)
    tq_wait_ns = 1000000;    /* the other device completes elsewhere */
  pool_dev = ring_alloc (pool_dev);

  catch_stop_signals ();
  for (;;) {
    /* Fill every free slot ahead of the writer. */
    while (!eof) {
      if (copy_stop_signal ()) {
        eof = true;
        break;
      }
      struct slot *s = &ring[read_idx % RING];
      bool free_slot;
      int last_write;

      pthread_mutex_lock (&lock);
      free_slot = s->state == EMPTY;
      last_write = s->result;
      pthread_mutex_unlock (&lock);
      if (!free_slot)
        break;
      /* A device write that failed is reported before its slot is reused
       * (a failed read never gets here: the writer stops on it). */
      check_write (&dst, s, &zeroes, last_write);
      if (!fill_slot (&src, s, read_off, &eof)) {
        eof = true;
        break;
      }
      read_off += s->len;
      read_idx++;
      /* A chunk read from an fd is written at once: the next read may
       * block on a slow pipe, and the device should not wait for it. */
      if (!src.dev && dst.dev)
        break;
    }
    if (write_idx == read_idx) {
      if (eof)
        break;
      /* Every slot holds a device write in flight: wait for the one the
       * reader needs next. */
      struct slot *next = &ring[read_idx % RING];

      check_write (&dst, next, &zeroes, settle_slot (next));
      continue;
    }
    /* Write the oldest slot once its data is in. */
    struct slot *s = &ring[write_idx % RING];
    wait_state (s, FULL);
    if (s->result)
      die (1, "%s: read at offset %" PRIu64 ": %s", src.name, s->off,
           strerror (-s->result));
    /* A source of unknown size (a pipe) can turn out larger than the
     * device: what fits is written, and the copy ends there. */
    if (dst.dev && s->off + s->len > dst.size) {
      too_large = true;
      if (s->off >= dst.size)
        break;
      s->len = dst.size - s->off;
    }
    /* Read chunks, from a device or an fd, are scanned here alike. */
    if (!s->unread)
      s->zero = zeroes.detect && all_zero (s->buf, s->len);
    write_slot (&dst, s, &zeroes);
    written += s->len;
    write_idx++;
    if (a.show_progress)
      progress (written, src.size, false);
    if (too_large)
      break;
  }
  for (unsigned i = 0; i < RING; i++)
    check_write (&dst, &ring[i], &zeroes, settle_slot (&ring[i]));
  if (dst.dev)
    flush_device (&dst);
  if (too_large)
    die (1, "%s: the source is larger than the device (%" PRIu64 " bytes): "
         "that much was copied and flushed, the rest was not", dst.name,
         dst.size);
  if (zeroes.file_holes)
    end_output (&dst, written);
  if (!dst.dev && dst.fd != STDOUT_FILENO && close (dst.fd) == -1)
    die (1, "%s: %s", dst.name, strerror (errno));
  if (a.show_progress)
    progress (written, src.size, true);
  stopped_by = copy_stop_signal ();
  if (stopped_by)
    fprintf (stderr, "vublk: copy: stopped by SIG%s: %s holds the first %"
             PRIu64 " bytes of %s\n", sigabbrev_np (stopped_by), dst.name,
             written, src.name);
  ring_free (pool_dev);
  vublk_tq_close (tq);
  vublk_close (src.dev);
  vublk_close (dst.dev);
  return stopped_by ? 128 + stopped_by : 0;
}
