/* clock.c — the clocks and the eventfd signalling every layer uses: the
 * monotonic clock (and its coarse, cheaper variant for per-request
 * stamps), signalling or draining an eventfd whose counter may be
 * saturated or empty (both harmless: it stays readable, or there was
 * nothing to take), and a look at whether an fd has input. */
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

uint64_t
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

uint64_t
now_coarse_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t) ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

void
eventfd_signal (int fd)
{
  uint64_t one = 1;

  if (write (fd, &one, sizeof one) < 0) {
    /* EAGAIN: the counter is saturated, the reader wakes anyway. */
  }
}

void
eventfd_drain (int fd)
{
  uint64_t v;

  if (read (fd, &v, sizeof v) < 0) {
    /* EAGAIN: nothing to drain. */
  }
}

bool
fd_readable (int fd)
{
  struct pollfd pfd = { .fd = fd, .events = POLLIN };

  return fd >= 0 && poll (&pfd, 1, 0) > 0;
}
