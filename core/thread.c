/* thread.c — starting the library's own threads (completion threads, the
 * control thread) with every signal blocked, so that a program's signal
 * handlers (SIGINT, SIGTERM, SIGCHLD, ...) run on its own threads, never
 * on ours, whatever the program's mask was when it called vublk_open;
 * and which queue, if any, the calling thread drives. */
#include <errno.h>
#include <signal.h>

#include "internal.h"

int
library_thread_start (pthread_t *thread, void *(*fn) (void *), void *arg)
{
  sigset_t all, old;
  int err;

  sigfillset (&all);
  pthread_sigmask (SIG_SETMASK, &all, &old);
  err = pthread_create (thread, NULL, fn, arg);
  pthread_sigmask (SIG_SETMASK, &old, NULL);
  return err;
}

/* The queue this thread drives, if any. */
static HOT_THREAD_LOCAL const struct vublk_queue *tls_driven_queue;

void
thread_set_driven_queue (const struct vublk_queue *q)
{
  tls_driven_queue = q;
}

bool
thread_drives (const struct vublk_queue *q)
{
  return tls_driven_queue == q;
}

const struct vublk_queue *
thread_driven_queue (void)
{
  return tls_driven_queue;
}
