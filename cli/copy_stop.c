/* copy_stop.c — how `vublk copy` stops on SIGINT, SIGTERM or SIGHUP: the
 * signal is noted (a pipe wakes a read waiting on its input), the caller
 * stops reading, and a wait after it that lasts is told to the user. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#include "copy.h"

/* The first stop signal taken, or 0; and a pipe the handler writes to,
 * so that a read about to block sees the signal even if it came just
 * before the read began. */
static volatile sig_atomic_t stop_signal;
static int stop_pipe[2] = { -1, -1 };

/* When a wait for a request first found a stop signal taken (0: not
 * yet), and whether the user was told that copy still waits. */
static struct timespec draining_since;
static bool said_draining;

/* The stop signals taken (those the process did not ignore). */
static sigset_t caught;

/* The handler: notes the first signal, gives every stop signal back its
 * default effect (the next one, whichever, ends the process) and wakes a
 * read waiting for input.  The system call it interrupts is not
 * restarted. */
static void
on_stop_signal (int sig)
{
  struct sigaction dfl = { .sa_handler = SIG_DFL };
  int saved = errno;

  if (!stop_signal)
    stop_signal = sig;
  for (int s = 1; s < NSIG; s++)
    if (sigismember (&caught, s) == 1)
      sigaction (s, &dfl, NULL);
  if (write (stop_pipe[1], "", 1) < 0) {
    /* Full or gone: the flag says it all the same. */
  }
  errno = saved;
}

void
catch_stop_signals (void)
{
  struct sigaction sa = { .sa_handler = on_stop_signal };

  if (pipe2 (stop_pipe, O_CLOEXEC | O_NONBLOCK) == -1)
    return;
  stop_signals (&caught, true);
  sa.sa_mask = caught;          /* one handler at a time */
  for (int sig = 1; sig < NSIG; sig++)
    if (sigismember (&caught, sig) == 1)
      sigaction (sig, &sa, NULL);
}

bool
input_or_stop (int fd)
{
  struct pollfd p[2] = {
    { .fd = fd, .events = POLLIN },
    { .fd = stop_pipe[0], .events = POLLIN },
  };

  if (stop_pipe[0] < 0)
    return true;
  while (poll (p, 2, -1) < 0)
    if (errno != EINTR)
      return true;      /* let read() report what is wrong */
  return !(p[1].revents & POLLIN);
}

int
copy_stop_signal (void)
{
  return stop_signal;
}

void
note_wait_after_stop (void)
{
  struct timespec now;

  if (!stop_signal || said_draining)
    return;
  clock_gettime (CLOCK_MONOTONIC, &now);
  if (!draining_since.tv_sec && !draining_since.tv_nsec)
    draining_since = now;
  else if ((now.tv_sec - draining_since.tv_sec) * 1000000000ll
           + (now.tv_nsec - draining_since.tv_nsec) >= 1000000000ll) {
    say_still_draining ("copy");
    said_draining = true;
  }
}
