/* mmap_check — a shadow-checked random test of a shared file mapping
 * mixed with read() and write() on the same file.
 *
 *   mmap_check FILE SEED OPS SHADOW_OUT
 *
 * Reads FILE into an in-memory shadow, maps it MAP_SHARED, then does OPS
 * random operations, each applied to the file and to the shadow: stores
 * into the map (memcpy), msync of a range, pwrite, pread checked against
 * the shadow, and loads from the map checked against the shadow.  Offsets
 * and lengths are unaligned and cross page and request boundaries.  At
 * the end it syncs and unmaps, reads the whole file back with O_DIRECT
 * (past any page cache) and compares it with the shadow, and writes the
 * shadow to SHADOW_OUT, so the caller can compare the backing storage.
 *
 * The same SEED gives the same operations.  Exit 0 if everything matched;
 * 1 on a mismatch or failed call, with the seed, the operation and the
 * last few operations before it on stderr; 2 on a usage error. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum op_kind { OP_MAP_STORE, OP_MSYNC, OP_PWRITE, OP_PREAD, OP_MAP_LOAD,
               OP_KINDS };

static const char *const op_names[OP_KINDS] = {
  "map-store", "msync", "pwrite", "pread", "map-load",
};

struct op {
  unsigned long n;      /* operation number, from 1 */
  enum op_kind kind;
  uint64_t off;
  size_t len;
};

/* The last HISTORY operations, printed when something goes wrong. */
#define HISTORY 12
static struct op history[HISTORY];
static unsigned long ops_done;
static uint64_t seed;

static uint64_t rng_state;

/* xorshift64*: small, seedable, good enough to pick offsets. */
static uint64_t
rng_next (void)
{
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1Dull;
}

/* A number in [0, n). */
static uint64_t
rng_below (uint64_t n)
{
  return rng_next () % n;
}

static void
fill_random (unsigned char *p, size_t len)
{
  for (size_t i = 0; i < len; i++)
    p[i] = rng_next () >> 56;
}

/* Prints the seed and the recent operations, then exits 1. */
static void __attribute__ ((format (printf, 1, 2), noreturn))
fail (const char *fmt, ...)
{
  va_list ap;
  unsigned long first = ops_done > HISTORY ? ops_done - HISTORY + 1 : 1;

  fprintf (stderr, "mmap_check: FAIL (seed %" PRIu64 "): ", seed);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  fprintf (stderr, "mmap_check: the last operations:\n");
  for (unsigned long n = first; n <= ops_done; n++) {
    const struct op *o = &history[n % HISTORY];

    fprintf (stderr, "  #%lu %s offset %" PRIu64 " length %zu\n", o->n,
             op_names[o->kind], o->off, o->len);
  }
  exit (1);
}

/* Compares got with the shadow at off; fails naming the first
 * difference. */
static void
check (const char *what, const unsigned char *got, const unsigned char *want,
       uint64_t off, size_t len)
{
  if (memcmp (got, want, len) == 0)
    return;
  for (size_t i = 0; i < len; i++)
    if (got[i] != want[i])
      fail ("%s at offset %" PRIu64 " length %zu: byte %" PRIu64
            " is 0x%02x, expected 0x%02x", what, off, len,
            off + (uint64_t) i, got[i], want[i]);
}

/* A random range inside a file of size bytes: mostly small and unaligned,
 * sometimes a page or several, sometimes up to 256 KiB. */
static void
random_range (uint64_t size, uint64_t *off, size_t *len)
{
  static const size_t lens[] = { 1, 7, 511, 512, 513, 4095, 4096, 4097,
                                 8192, 65536 + 3 };
  size_t n;

  switch (rng_below (3)) {
  case 0: n = lens[rng_below (sizeof lens / sizeof lens[0])]; break;
  case 1: n = 1 + rng_below (16384); break;
  default: n = 1 + rng_below (256 << 10); break;
  }
  if (n > size)
    n = size;
  *off = rng_below (size - n + 1);
  *len = n;
}

static void
pwrite_all (int fd, const void *buf, size_t len, uint64_t off)
{
  size_t done = 0;

  while (done < len) {
    ssize_t r = pwrite (fd, (const char *) buf + done, len - done,
                        off + done);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      fail ("pwrite of %zu bytes at %" PRIu64 ": %s", len - done, off + done,
            r < 0 ? strerror (errno) : "wrote nothing");
    done += r;
  }
}

static void
pread_all (int fd, void *buf, size_t len, uint64_t off)
{
  size_t done = 0;

  while (done < len) {
    ssize_t r = pread (fd, (char *) buf + done, len - done, off + done);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      fail ("pread of %zu bytes at %" PRIu64 ": %s", len - done, off + done,
            r < 0 ? strerror (errno) : "end of file");
    done += r;
  }
}

/* Reads the whole file with O_DIRECT and compares it with the shadow. */
static void
check_direct (const char *path, const unsigned char *shadow, uint64_t size)
{
  const size_t chunk = 1 << 20;
  void *buf;
  int fd = open (path, O_RDONLY | O_DIRECT);

  if (fd < 0)
    fail ("open %s with O_DIRECT: %s", path, strerror (errno));
  if (posix_memalign (&buf, 4096, chunk))
    fail ("out of memory");
  for (uint64_t off = 0; off < size; off += chunk) {
    size_t n = size - off < chunk ? size - off : chunk;

    pread_all (fd, buf, n, off);
    check ("final O_DIRECT read", buf, shadow + off, off, n);
  }
  free (buf);
  close (fd);
}

static void
write_shadow (const char *path, const unsigned char *shadow, uint64_t size)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

  if (fd < 0)
    fail ("create %s: %s", path, strerror (errno));
  pwrite_all (fd, shadow, size, 0);
  if (close (fd))
    fail ("close %s: %s", path, strerror (errno));
}

int
main (int argc, char **argv)
{
  const char *path;
  unsigned long ops;
  unsigned char *shadow, *map, *buf;
  uint64_t size, page = sysconf (_SC_PAGESIZE);
  struct stat st;
  int fd;

  if (argc != 5) {
    fprintf (stderr, "usage: mmap_check FILE SEED OPS SHADOW_OUT\n");
    return 2;
  }
  path = argv[1];
  seed = strtoull (argv[2], NULL, 0);
  ops = strtoul (argv[3], NULL, 0);
  rng_state = seed * 0x9E3779B97F4A7C15ull + 1;   /* never 0 */

  if ((fd = open (path, O_RDWR)) < 0 || fstat (fd, &st))
    fail ("open %s: %s", path, strerror (errno));
  size = st.st_size;
  if (size == 0)
    fail ("%s is empty", path);
  if (!(shadow = malloc (size)) || !(buf = malloc (256 << 10)))
    fail ("out of memory");
  pread_all (fd, shadow, size, 0);
  map = mmap (NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED)
    fail ("mmap(MAP_SHARED) of %s: %s", path, strerror (errno));
  check ("first map load", map, shadow, 0, size);

  for (ops_done = 1; ops_done <= ops; ops_done++) {
    struct op *o = &history[ops_done % HISTORY];

    o->n = ops_done;
    o->kind = rng_below (OP_KINDS);
    random_range (size, &o->off, &o->len);
    switch (o->kind) {
    case OP_MAP_STORE:
      fill_random (buf, o->len);
      memcpy (map + o->off, buf, o->len);
      memcpy (shadow + o->off, buf, o->len);
      break;
    case OP_MSYNC: {
      uint64_t start = o->off & ~(page - 1);

      if (msync (map + start, o->off + o->len - start,
                 rng_below (2) ? MS_SYNC : MS_ASYNC))
        fail ("msync: %s", strerror (errno));
      break;
    }
    case OP_PWRITE:
      fill_random (buf, o->len);
      pwrite_all (fd, buf, o->len, o->off);
      memcpy (shadow + o->off, buf, o->len);
      break;
    case OP_PREAD:
      pread_all (fd, buf, o->len, o->off);
      check ("pread", buf, shadow + o->off, o->off, o->len);
      break;
    case OP_MAP_LOAD:
      check ("map load", map + o->off, shadow + o->off, o->off, o->len);
      break;
    default:
      abort ();
    }
  }
  ops_done--;

  check ("last map load", map, shadow, 0, size);
  if (msync (map, size, MS_SYNC))
    fail ("final msync: %s", strerror (errno));
  if (munmap (map, size))
    fail ("munmap: %s", strerror (errno));
  if (fsync (fd))
    fail ("fsync: %s", strerror (errno));
  close (fd);
  check_direct (path, shadow, size);
  write_shadow (argv[4], shadow, size);
  printf ("mmap_check: %lu operations on %" PRIu64 " bytes matched "
          "(seed %" PRIu64 ")\n", ops, size, seed);
  free (buf);
  free (shadow);
  return 0;
}
