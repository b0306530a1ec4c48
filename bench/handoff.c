/* bench/handoff.c — what one hand-off between two processes costs on
 * this machine, the unit every path through a vhost-user backend pays.
 *
 * Two processes pass a token back and forth through two eventfds, the
 * way a frontend and its backend pass requests (kick) and completions
 * (call): each side signals the other, then sleeps in poll() and read()s
 * its own eventfd, as libvublk does.  Every round trip therefore holds
 * two wake-ups of a sleeping process.  bench/compare turns the figures
 * into the ceilings of paths that add such hand-offs (a plugin that
 * sleeps on its backend's reply, one more process per request).
 *
 *   handoff [--time T]
 *
 * Prints one line, "key=value" separated by spaces:
 *   handoff rounds=N round_trip_us=X wake_us=X cpu_us_per_side=X
 * wake_us is half a round trip (one wake-up, with its signal and read);
 * cpu_us_per_side is the CPU one side spends per round trip: one signal
 * that wakes the other and one sleep until it is woken.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_clock.h"

/* Exits with a message naming what failed. */
static void
die (const char *what)
{
  fprintf (stderr, "handoff: %s: %s\n", what, strerror (errno));
  exit (1);
}

/* Sleeps until fd is signalled, then consumes the signal.  Returns the
 * value read (0 means: stop). */
static uint64_t
wait_signal (int fd)
{
  struct pollfd pfd = { .fd = fd, .events = POLLIN };
  uint64_t v;

  while (poll (&pfd, 1, -1) < 0)
    if (errno != EINTR)
      die ("poll");
  if (read (fd, &v, sizeof v) != sizeof v)
    die ("read");
  return v;
}

/* Adds v to fd's counter, waking whoever sleeps on it. */
static void
signal_fd (int fd, uint64_t v)
{
  if (write (fd, &v, sizeof v) != sizeof v)
    die ("write");
}

int
main (int argc, char **argv)
{
  double seconds = 2;
  uint64_t rounds = 0;
  int to_child, to_parent;
  pid_t child;

  for (int i = 1; i < argc; i++) {
    char *end;

    if (!strcmp (argv[i], "--time") && i + 1 < argc) {
      seconds = strtod (argv[++i], &end);
      if (*end || !(seconds > 0 && seconds <= 3600)) {
        fprintf (stderr, "handoff: --time must be seconds in (0, 3600]\n");
        return 2;
      }
    }
    else {
      fprintf (stderr, "usage: handoff [--time SECONDS]\n");
      return 2;
    }
  }
  /* Non-blocking like the fds a backend shares with us (qemu sets that
   * flag); the waits poll first, as libvublk's do. */
  to_child = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  to_parent = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (to_child < 0 || to_parent < 0)
    die ("eventfd");
  child = fork ();
  if (child < 0)
    die ("fork");
  if (child == 0) {
    /* Echo every token; 2 is the stop token (a counter adds, so the
     * value is 1 per token unless two are pending, which never
     * happens in a ping-pong). */
    while (wait_signal (to_child) == 1)
      signal_fd (to_parent, 1);
    _exit (0);
  }

  uint64_t start = bench_now_ns (), stop = start + (uint64_t) (seconds * 1e9);
  uint64_t end;
  double cpu0 = bench_cpu_seconds (RUSAGE_SELF);

  do {
    for (int i = 0; i < 1000; i++) {
      signal_fd (to_child, 1);
      wait_signal (to_parent);
    }
    rounds += 1000;
  } while ((end = bench_now_ns ()) < stop);

  double parent_cpu = bench_cpu_seconds (RUSAGE_SELF) - cpu0;
  int status;

  signal_fd (to_child, 2);
  if (waitpid (child, &status, 0) != child || !WIFEXITED (status)
      || WEXITSTATUS (status) != 0) {
    fprintf (stderr, "handoff: the echoing process failed\n");
    return 1;
  }
  double child_cpu = bench_cpu_seconds (RUSAGE_CHILDREN);
  double rt_us = (end - start) / 1e3 / rounds;

  printf ("handoff rounds=%llu round_trip_us=%.2f wake_us=%.2f "
          "cpu_us_per_side=%.2f\n", (unsigned long long) rounds, rt_us,
          rt_us / 2, (parent_cpu + child_cpu) * 1e6 / 2 / rounds);
  return 0;
}
