/* signals.c — which signals ask a frontend to stop: SIGINT (Ctrl-C),
 * SIGTERM and SIGHUP, in one place for vublk bench, vublk copy and
 * vublk-fuse; and what bench and copy say when the requests they wait
 * for after one do not come back. */
#include <signal.h>
#include <stdio.h>

#include "frontend.h"

void
stop_signals (sigset_t *set, bool skip_ignored)
{
  static const int stop[] = { SIGINT, SIGTERM, SIGHUP };

  sigemptyset (set);
  for (unsigned i = 0; i < sizeof stop / sizeof stop[0]; i++) {
    struct sigaction now;

    if (skip_ignored && sigaction (stop[i], NULL, &now) == 0
        && now.sa_handler == SIG_IGN)
      continue;
    sigaddset (set, stop[i]);
  }
}

void
say_still_draining (const char *command)
{
  fprintf (stderr, "vublk: %s: waiting for the requests in flight "
           "(interrupt again to quit at once)\n", command);
}
