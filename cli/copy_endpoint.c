/* copy_endpoint.c — the two ends of `vublk copy`: a device, a file, a pipe
 * or a standard stream; opening them and moving bytes through an fd. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "copy.h"

/* Asks for a pipe buffer of one chunk (the kernel's default is 64 KiB),
 * or as much as the system allows: fewer wake-ups per chunk for the
 * reader or the writer on the other end.  A refusal changes nothing,
 * and a buffer already that large is left as it is (never shrunk). */
static void
grow_pipe (int fd)
{
  int now = fcntl (fd, F_GETPIPE_SZ);

  for (int size = COPY_CHUNK; size >= 65536 && size > now; size /= 2)
    if (fcntl (fd, F_SETPIPE_SZ, size) >= 0)
      return;
}

void
open_endpoint (struct endpoint *e, const char *spec, bool output,
               const struct vublk_options *o)
{
  struct stat st;

  e->name = spec;
  e->dev = NULL;
  e->size = UINT64_MAX;
  e->holes_read_as_zero = false;
  if (!strncmp (spec, DEVICE_PREFIX, strlen (DEVICE_PREFIX))) {
    if (!spec[strlen (DEVICE_PREFIX)])
      die (EXIT_USAGE, "copy: '%s' names no socket", spec);
    e->dev = open_device (spec + strlen (DEVICE_PREFIX), o);
    e->size = vublk_get_size (e->dev);
    return;
  }
  if (!strcmp (spec, "-"))
    e->fd = output ? STDOUT_FILENO : STDIN_FILENO;
  else {
    e->fd = output ? open (spec, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                           0644)
                   : open (spec, O_RDONLY | O_CLOEXEC);
    if (e->fd == -1 && errno == ENXIO && stat (spec, &st) == 0
        && S_ISSOCK (st.st_mode))
      die (EXIT_USAGE, "copy: %s is a socket, not a file: write %s%s for "
           "the device behind it", spec, DEVICE_PREFIX, spec);
    if (e->fd == -1)
      die (1, "%s: %s", spec, strerror (errno));
  }
  if (fstat (e->fd, &st) == -1)
    return;
  if (S_ISFIFO (st.st_mode))
    grow_pipe (e->fd);
  if (S_ISREG (st.st_mode) && !output)
    e->size = st.st_size;
  /* Standard output may be a file that was there before (>>).  And a
   * file that still has a size after O_TRUNC keeps its old data where
   * nothing is written: a disk shown as a file (vublk-fuse, nbdfuse)
   * ignores O_TRUNC, so zeroes must be written there, and it keeps its
   * size at the end. */
  e->holes_read_as_zero = S_ISREG (st.st_mode) && output
                          && strcmp (spec, "-") != 0 && st.st_size == 0;
}

void
refuse_same_device (const char *src, const char *dst)
{
  struct stat in, out;
  size_t n = strlen (DEVICE_PREFIX);

  if (strncmp (src, DEVICE_PREFIX, n) || strncmp (dst, DEVICE_PREFIX, n))
    return;
  if (stat (src + n, &in) == 0 && stat (dst + n, &out) == 0
      && in.st_dev == out.st_dev && in.st_ino == out.st_ino)
    die (1, "copy: %s and %s are the same device", src, dst);
}

void
refuse_same_file (const struct endpoint *src, const char *dst)
{
  struct stat in, out;
  bool to_stdout = !strcmp (dst, "-");

  if (src->dev || !strncmp (dst, DEVICE_PREFIX, strlen (DEVICE_PREFIX)))
    return;
  /* Standard output too (">> SRC"): a copy appending to its own source
   * would never end.  Only a regular file: a terminal or a pipe may be
   * both input and output. */
  if (fstat (src->fd, &in) == 0 && S_ISREG (in.st_mode)
      && (to_stdout ? fstat (STDOUT_FILENO, &out) : stat (dst, &out)) == 0
      && in.st_dev == out.st_dev && in.st_ino == out.st_ino)
    die (1, "copy: %s and %s are the same file", src->name,
         to_stdout ? "standard output" : dst);
}

size_t
read_full (const struct endpoint *e, uint8_t *buf, size_t len)
{
  size_t got = 0;

  while (got < len) {
    if (!input_or_stop (e->fd))
      break;
    ssize_t r = read (e->fd, buf + got, len - got);
    if (r == 0)
      break;
    if (r < 0) {
      if (errno == EINTR)
        continue;
      die (1, "%s: read: %s", e->name, strerror (errno));
    }
    got += r;
  }
  return got;
}

void
write_full (const struct endpoint *e, const uint8_t *buf, size_t len)
{
  while (len > 0) {
    ssize_t r = write (e->fd, buf, len);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      die (1, "%s: write: %s", e->name, strerror (errno));
    }
    buf += r;
    len -= r;
  }
}

size_t
skip_hole (const struct endpoint *e, size_t len)
{
  struct stat st;
  off_t pos, data;

  if (e->dev || fstat (e->fd, &st) == -1 || !S_ISREG (st.st_mode))
    return 0;
  pos = lseek (e->fd, 0, SEEK_CUR);
  if (pos == -1 || pos >= st.st_size)
    return 0;
  if ((uint64_t) (st.st_size - pos) < len)
    len = st.st_size - pos;
  data = lseek (e->fd, pos, SEEK_DATA);
  if (data == -1 && errno != ENXIO)     /* holes cannot be asked for */
    return 0;
  if (data != -1 && data < pos + (off_t) len) {
    if (lseek (e->fd, pos, SEEK_SET) == -1)
      die (1, "%s: seek: %s", e->name, strerror (errno));
    return 0;
  }
  if (lseek (e->fd, pos + len, SEEK_SET) == -1)
    die (1, "%s: seek: %s", e->name, strerror (errno));
  return len;
}

void
skip_output (const struct endpoint *e, size_t len)
{
  if (lseek (e->fd, len, SEEK_CUR) == -1)
    die (1, "%s: seek: %s", e->name, strerror (errno));
}

void
end_output (const struct endpoint *e, uint64_t size)
{
  if (ftruncate (e->fd, size) == -1)
    die (1, "%s: truncate to %" PRIu64 " bytes: %s", e->name, size,
         strerror (errno));
}
