/* control.c — the control thread: after the handshake only it talks on
 * the socket, so the socket needs no lock.  It sleeps in poll() on the
 * socket (a backend never speaks first on it: readable means closed or
 * broken), the backend channel (config changes) and a wake eventfd,
 * waking every 250 ms to check request deadlines.  When the backend goes
 * away, breaks the protocol or stops answering, it reconnects with
 * backoff and replays what was in flight, within the reconnect window;
 * each event reaches the log callback with its reason.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "internal.h"

#define CONTROL_TICK_MS 250
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 1000

/* Moves the device to state to, unless vublk_close has begun: the
 * closing state must never be overwritten, or the control loop, which
 * ends only on it, would outlive the close that joins it.  Returns false
 * if the device is closing. */
static bool
set_state_unless_closing (struct vublk *dev, enum device_state to)
{
  int from = atomic_load (&dev->state);

  do
    if (from == DEV_CLOSING || from == DEV_CLOSED)
      return false;
  while (!atomic_compare_exchange_weak (&dev->state, &from, to));
  return true;
}

bool
control_sleep (struct vublk *dev, int ms)
{
  uint64_t end = now_ns () + (uint64_t) ms * 1000000;

  for (;;) {
    struct pollfd pfd = { .fd = dev->ctl_wake_fd, .events = POLLIN };
    uint64_t now = now_ns ();

    if (atomic_load (&dev->state) == DEV_CLOSING)
      return true;
    if (now >= end)
      return false;
    if (poll (&pfd, 1, (int) ((end - now + 999999) / 1000000)) > 0)
      eventfd_drain (dev->ctl_wake_fd);
  }
}

/* Tests widen the window between a reconnect's handshake and its state
 * change (where a vublk_close must not be overwritten) to this many
 * milliseconds: VUBLK_TEST_RECONNECT_PAUSE_MS.  Unset in real use. */
static void
test_pause_before_connected (void)
{
  const char *ms = getenv ("VUBLK_TEST_RECONNECT_PAUSE_MS");

  if (ms)
    usleep (strtoul (ms, NULL, 10) * 1000);
}

/* One reconnect attempt: handshake with the same memory, then every ring
 * replayed with the requests that had not completed (see queue_replay
 * for those that fail instead).  Returns 0/-errno. */
static int
try_reconnect (struct vublk *dev)
{
  unsigned failed = 0;
  int err;

  err = handshake_features_and_memory (dev, false);
  if (err)
    return err;
  for (unsigned i = 0; i < dev->nqueues; i++)
    failed += queue_replay (&dev->queues[i], dev->offered_readonly);
  /* What queues reported until their rings were reset was the old
   * connection's fault, already counted: not a reason to reconnect again. */
  atomic_store (&dev->violation, false);
  err = handshake_rings (dev);
  if (err)
    return err;
  handshake_apply_readonly (dev);
  test_pause_before_connected ();
  if (!set_state_unless_closing (dev, DEV_CONNECTED))
    return 0;          /* connected, but closing: the loop ends now */
  atomic_fetch_add (&dev->reconnects, 1);
  dev->last_reconnect_ns = now_ns ();
  for (unsigned i = 0; i < dev->nqueues; i++)
    queue_kick (&dev->queues[i]);
  if (failed) {
    pthread_mutex_lock (&dev->info_lock);
    device_log (dev, VUBLK_LOG_ERROR, "%u request(s) failed with EIO: "
                "their replay met the same fault again (%s)", failed,
                dev->violation_reason);
    pthread_mutex_unlock (&dev->info_lock);
  }
  device_log (dev, VUBLK_LOG_INFO, "reconnected (reconnect %llu)",
              (unsigned long long) atomic_load (&dev->reconnects));
  return 0;
}

static void
fail_everything (struct vublk *dev)
{
  for (unsigned i = 0; i < dev->nqueues; i++)
    queue_fail_all (&dev->queues[i], -EIO);
}

/* Why the control thread reconnects. */
enum reconnect_reason {
  RECONNECT_CLOSED,         /* the socket closed or broke */
  RECONNECT_VIOLATION,      /* a queue saw a protocol violation */
  RECONNECT_HUNG,           /* a request outlived the request timeout */
  RECONNECT_CONFIG,         /* a changed configuration could not be read
                               (logged by handshake_backend_message) */
};

/* Closes the control socket and the backend channel. */
static void
drop_connection (struct vublk *dev)
{
  if (dev->sock >= 0) {
    close (dev->sock);
    dev->sock = -1;
  }
  if (dev->backend_fd >= 0) {
    close (dev->backend_fd);
    dev->backend_fd = -1;
  }
}

/* Counts a lost connection against every request in flight (see
 * queue_note_drop), naming the reason for those it abandons. */
static void
note_drop (struct vublk *dev)
{
  unsigned abandoned = 0;

  for (unsigned i = 0; i < dev->nqueues; i++)
    abandoned += queue_note_drop (&dev->queues[i]);
  if (!abandoned)
    return;
  pthread_mutex_lock (&dev->info_lock);
  snprintf (dev->violation_reason, sizeof dev->violation_reason,
            "the backend closed the connection %d times in a row with it "
            "in flight: a request it dies on?", MAX_DROPS_IN_FLIGHT);
  pthread_mutex_unlock (&dev->info_lock);
  /* Now, not after the replay: the failures may end the program first. */
  device_log (dev, VUBLK_LOG_ERROR, "%u request(s) will not be sent "
              "again, and fail with EIO unless the old backend answered "
              "them: it closed the connection %d times in a row with them "
              "in flight (a request it dies on?)", abandoned,
              MAX_DROPS_IN_FLIGHT);
}

/* Logs why we reconnect; unasked is how many bytes the control socket
 * held when it was dropped (a backend never speaks there unasked). */
static void
log_reconnect_reason (struct vublk *dev, enum reconnect_reason why,
                      int unasked)
{
  switch (why) {
  case RECONNECT_VIOLATION:
    pthread_mutex_lock (&dev->info_lock);
    device_log (dev, VUBLK_LOG_WARNING, "backend broke the protocol (%s); "
                "reconnecting", dev->violation_reason);
    pthread_mutex_unlock (&dev->info_lock);
    for (unsigned i = 0; i < dev->nqueues; i++)
      queue_note_violation (&dev->queues[i]);
    break;
  case RECONNECT_HUNG:
    pthread_mutex_lock (&dev->info_lock);
    snprintf (dev->violation_reason, sizeof dev->violation_reason,
              "a request got no answer within %g s",
              dev->opts.request_timeout);
    pthread_mutex_unlock (&dev->info_lock);
    device_log (dev, VUBLK_LOG_WARNING, "a request got no answer within "
                "%g s; reconnecting", dev->opts.request_timeout);
    break;
  case RECONNECT_CLOSED:
    if (unasked > 0)
      device_log (dev, VUBLK_LOG_WARNING, "backend sent %d bytes on the "
                  "control socket that no request was waiting for (unasked, "
                  "or a reply after its deadline); reconnecting", unasked);
    else
      device_log (dev, VUBLK_LOG_WARNING, "backend closed the connection; "
                  "reconnecting");
    note_drop (dev);
    break;
  case RECONNECT_CONFIG:
    break;
  }
}

/* Keeps the last reconnect attempt's error (this thread's) as the reason
 * requests on the failed device give, without the socket path the
 * messages that quote it already start with. */
static void
note_failure_reason (struct vublk *dev)
{
  const char *why = vublk_get_error ();
  size_t n = strlen (dev->socket_path);

  if (!strncmp (why, dev->socket_path, n) && !strncmp (why + n, ": ", 2))
    why += n + 2;
  pthread_mutex_lock (&dev->info_lock);
  snprintf (dev->failure_reason, sizeof dev->failure_reason, "%s", why);
  pthread_mutex_unlock (&dev->info_lock);
}

/* Reconnects that follow each other within this time back off, even when
 * each one succeeds: a backend that accepts and then misbehaves at once
 * must not be hammered thousands of times a second. */
#define RECONNECT_CALM_NS 2000000000ull

/* The backend is gone (or misbehaved): reconnect with backoff until the
 * reconnect timeout, then fail what is pending and keep trying slowly. */
static void
reconnect (struct vublk *dev, enum reconnect_reason why)
{
  uint64_t deadline;
  int backoff = BACKOFF_MIN_MS, unasked = 0, connected = DEV_CONNECTED;

  atomic_compare_exchange_strong (&dev->state, &connected, DEV_RECONNECTING);
  atomic_store (&dev->violation, false);
  if (dev->sock < 0 || ioctl (dev->sock, FIONREAD, &unasked) == -1)
    unasked = 0;
  drop_connection (dev);
  log_reconnect_reason (dev, why, unasked);
  if (dev->last_reconnect_ns
      && now_ns () - dev->last_reconnect_ns < RECONNECT_CALM_NS) {
    dev->reconnect_backoff_ms = dev->reconnect_backoff_ms
                                ? dev->reconnect_backoff_ms * 2
                                : BACKOFF_MIN_MS;
    if (dev->reconnect_backoff_ms > BACKOFF_MAX_MS)
      dev->reconnect_backoff_ms = BACKOFF_MAX_MS;
    device_log (dev, VUBLK_LOG_INFO, "last reconnect was %llu ms ago; "
                "waiting %u ms", (unsigned long long)
                ((now_ns () - dev->last_reconnect_ns) / 1000000),
                dev->reconnect_backoff_ms);
    if (control_sleep (dev, dev->reconnect_backoff_ms))
      return;
  }
  else
    dev->reconnect_backoff_ms = 0;
  deadline = now_ns () + (uint64_t) (dev->opts.reconnect_timeout * 1e9);
  for (;;) {
    int err;

    dev->attempt_deadline_ns = deadline;
    err = try_reconnect (dev);
    dev->attempt_deadline_ns = 0;
    if (err == 0)
      return;
    device_log (dev, VUBLK_LOG_DEBUG, "reconnect attempt failed: %s",
                vublk_get_error ());
    /* The backend channel too: an attempt that failed after handing it
     * over leaves it open, and its hang-up would wake the control loop's
     * poll at once, for ever (a busy loop while failed). */
    drop_connection (dev);
    if (atomic_load (&dev->state) != DEV_FAILED && now_ns () >= deadline) {
      note_failure_reason (dev);
      if (!set_state_unless_closing (dev, DEV_FAILED))
        return;
      device_log (dev, VUBLK_LOG_ERROR, "backend did not come back within "
                  "%g s (%s); failing pending requests with EIO, still "
                  "trying every second", dev->opts.reconnect_timeout,
                  vublk_get_error ());
      fail_everything (dev);
      return;      /* the control loop retries every second from now on */
    }
    if (control_sleep (dev, backoff))
      return;
    backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
  }
}

/* True if any request has waited longer than the request timeout. */
static bool
requests_hung (struct vublk *dev)
{
  uint64_t limit = (uint64_t) (dev->opts.request_timeout * 1e9);
  uint64_t now = now_coarse_ns ();
  bool hung = false;

  if (!limit || now < limit)
    return false;
  for (unsigned i = 0; i < dev->nqueues; i++)
    hung |= queue_scan_timeouts (&dev->queues[i], now - limit);
  return hung;
}

/* Retries what waits for pool memory on every queue.  Completions retry
 * it too, but a queue with none to come (its buffers held by the caller)
 * would never look again, and its requests would never meet the pool
 * deadline (queue_pump_locked). */
static void
retry_pending (struct vublk *dev)
{
  for (unsigned i = 0; i < dev->nqueues; i++) {
    struct vublk_queue *q = &dev->queues[i];

    pthread_mutex_lock (&q->lock);
    if (q->pending_head)
      queue_pump_locked (q);
    pthread_mutex_unlock (&q->lock);
  }
}

void *
control_thread (void *arg)
{
  struct vublk *dev = arg;
  uint64_t last_retry = 0;

  /* Every reply this thread waits for gives up once vublk_close begins. */
  vu_set_cancel_fd (dev->close_fd);
  while (atomic_load (&dev->state) != DEV_CLOSING) {
    struct pollfd pfd[3] = {
      { .fd = dev->ctl_wake_fd, .events = POLLIN },
      { .fd = dev->sock, .events = POLLIN | POLLRDHUP },
      { .fd = dev->backend_fd, .events = POLLIN },
    };
    int r = poll (pfd, 3, CONTROL_TICK_MS);

    if (atomic_load (&dev->state) == DEV_CLOSING)
      break;
    if (r > 0 && pfd[0].revents)
      eventfd_drain (dev->ctl_wake_fd);
    if (atomic_load (&dev->state) == DEV_FAILED) {
      if (now_ns () - last_retry >= 1000000000ull) {
        last_retry = now_ns ();
        if (try_reconnect (dev) != 0) {
          note_failure_reason (dev);
          drop_connection (dev);
        }
      }
      continue;
    }
    if (r > 0 && pfd[2].revents && !handshake_backend_message (dev))
      reconnect (dev, RECONNECT_CONFIG);
    else if (atomic_load (&dev->violation))
      reconnect (dev, RECONNECT_VIOLATION);
    else if ((r > 0 && pfd[1].revents) || dev->sock < 0)
      reconnect (dev, RECONNECT_CLOSED);
    else if (requests_hung (dev))
      reconnect (dev, RECONNECT_HUNG);
    else
      retry_pending (dev);
  }
  return NULL;
}
