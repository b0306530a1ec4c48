/* test_control.c — control.c's backoff sleep: a wake-up that is not a
 * close (a queue reporting a fault, perhaps a second queue the same one)
 * is drained and the sleep goes on, so one wake cannot cut this or any
 * later backoff short; a close ends it at once. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "internal.h"

/* A device with what control_sleep uses: its state and wake fd. */
static struct vublk *
sleeper (void)
{
  struct vublk *dev = calloc (1, sizeof *dev);

  assert_non_null (dev);
  dev->ctl_wake_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  assert_true (dev->ctl_wake_fd >= 0);
  atomic_store (&dev->state, DEV_RECONNECTING);
  return dev;
}

static void
sleeper_free (struct vublk *dev)
{
  close (dev->ctl_wake_fd);
  free (dev);
}

static uint64_t
ms_since (uint64_t start_ns)
{
  return (now_ns () - start_ns) / 1000000;
}

/* A wake pending before the sleep, and the sleeps after it. */
static void
test_wake_before_does_not_cut_backoffs (void **state)
{
  struct vublk *dev = sleeper ();
  uint64_t t0, left;

  (void) state;
  eventfd_signal (dev->ctl_wake_fd);
  for (int i = 0; i < 3; i++) {
    t0 = now_ns ();
    assert_false (control_sleep (dev, 100));
    assert_true (ms_since (t0) >= 99);
  }
  /* The wake was taken, not left readable. */
  assert_int_equal (read (dev->ctl_wake_fd, &left, sizeof left), -1);
  sleeper_free (dev);
}

struct waker { struct vublk *dev; int close; };

/* Wakes the sleeper 30 ms in; with close set, closes the device first. */
static void *
wake_later (void *arg)
{
  struct waker *w = arg;

  usleep (30000);
  if (w->close)
    atomic_store (&w->dev->state, DEV_CLOSING);
  eventfd_signal (w->dev->ctl_wake_fd);
  return NULL;
}

/* A wake in the middle: the sleep goes on; a close in the middle: it
 * ends at once, saying so. */
static void
test_wake_during_sleeps_on_close_ends (void **state)
{
  struct vublk *dev = sleeper ();
  struct waker w = { dev, 0 };
  pthread_t t;
  uint64_t t0;

  (void) state;
  assert_int_equal (pthread_create (&t, NULL, wake_later, &w), 0);
  t0 = now_ns ();
  assert_false (control_sleep (dev, 200));
  assert_true (ms_since (t0) >= 199);
  pthread_join (t, NULL);

  w.close = 1;
  assert_int_equal (pthread_create (&t, NULL, wake_later, &w), 0);
  t0 = now_ns ();
  assert_true (control_sleep (dev, 5000));
  assert_true (ms_since (t0) < 2000);
  pthread_join (t, NULL);
  sleeper_free (dev);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_wake_before_does_not_cut_backoffs),
    cmocka_unit_test (test_wake_during_sleeps_on_close_ends),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
