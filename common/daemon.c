/* daemon.c — running in the background for a program that must report,
 * to the shell that started it, whether its service came up: fork, keep
 * the parent waiting on a pipe for "ready" or the failure message, and a
 * pid file.
 *
 * A child whose parent is gone (killed, or interrupted by the user) must
 * not start serving: nobody would learn of it, and the user was told it
 * failed.  So the child dies with its parent while it sets up (which may
 * wait for a busy backend), checks again once it has something to undo
 * (daemon_release), and takes the service down if the ready message
 * finds nobody reading (daemon_report_ready).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frontend.h"

/* Where start-up messages go in the child: the pipe to the waiting
 * parent (-1 when not daemonized, or once ready). */
static int status_fd = -1;

/* Set when the waiting parent turned out to be gone when the service
 * became ready. */
static bool parent_lost;

void
daemon_start (void)
{
  int fds[2];
  pid_t pid, parent = getpid ();
  char msg[1100];
  ssize_t n, len = 0;

  if (pipe2 (fds, O_CLOEXEC) == -1)
    die (1, "pipe: %s", strerror (errno));
  fflush (NULL);
  if ((pid = fork ()) == -1)
    die (1, "fork: %s", strerror (errno));
  if (pid == 0) {
    close (fds[0]);
    status_fd = fds[1];
    setsid ();
    /* Nothing to undo yet: SIGKILL is the quickest way out.  Cleared by
     * daemon_release. */
    if (prctl (PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid () != parent)
      _exit (1);
    return;
  }
  close (fds[1]);
  while (len < (ssize_t) sizeof msg - 1
         && ((n = read (fds[0], msg + len, sizeof msg - 1 - len)) > 0
             || (n == -1 && errno == EINTR)))
    if (n > 0)
      len += n;
  if (len == 1 && msg[0] == '\0')
    exit (0);
  msg[len] = '\0';
  if (len == 0) {
    int status;

    waitpid (pid, &status, 0);
    die (1, "the background process exited before it was ready (status %d)",
         WIFEXITED (status) ? WEXITSTATUS (status) : -1);
  }
  fputs (msg, stderr);
  exit (1);
}

void
keep_standard_fds_open (void)
{
  for (int fd = 0; fd <= 2; fd++)
    if (fcntl (fd, F_GETFD) == -1 && errno == EBADF) {
      int null = open ("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);

      if (null == -1)
        exit (1);           /* nowhere to say so */
      if (null != fd) {     /* lower ones are open by now */
        dup2 (null, fd);
        close (null);
      }
    }
}

int
daemon_status_fd (void)
{
  return __atomic_load_n (&status_fd, __ATOMIC_ACQUIRE);
}

/* True if the parent waiting on status_fd has gone: a pipe's write end
 * polls POLLERR once no reader is left. */
static bool
parent_is_gone (void)
{
  struct pollfd pfd = { .fd = status_fd, .events = POLLOUT };

  return status_fd >= 0 && poll (&pfd, 1, 0) == 1
         && (pfd.revents & POLLERR);
}

bool
daemon_release (void)
{
  if (status_fd < 0)
    return true;
  prctl (PR_SET_PDEATHSIG, 0);
  return !parent_is_gone ();
}

bool
daemon_report_ready (bool keep_stderr)
{
  int null, fd = __atomic_exchange_n (&status_fd, -1, __ATOMIC_ACQ_REL);

  if (fd < 0)
    return true;
  if ((null = open ("/dev/null", O_RDWR)) >= 0) {
    dup2 (null, 0);
    dup2 (null, 1);
    if (!keep_stderr) {
      log_to_syslog ();
      dup2 (null, 2);
    }
    if (null > 2)
      close (null);
  }
  if (chdir ("/") == -1) {
    /* nothing relies on the working directory */
  }
  if (write (fd, "", 1) != 1)     /* EPIPE: SIGPIPE is ignored */
    __atomic_store_n (&parent_lost, true, __ATOMIC_RELEASE);
  close (fd);
  return !__atomic_load_n (&parent_lost, __ATOMIC_ACQUIRE);
}

bool
daemon_parent_lost (void)
{
  return __atomic_load_n (&parent_lost, __ATOMIC_ACQUIRE);
}

int
write_pidfile (const char *path)
{
  FILE *f = fopen (path, "w");

  if (!f)
    return -errno;
  if (fprintf (f, "%ld\n", (long) getpid ()) < 0) {
    int err = errno;
    fclose (f);
    return -err;
  }
  return fclose (f) == 0 ? 0 : -errno;
}

char *
absolute_path (const char *path)
{
  char *cwd, *abs;

  if (path[0] == '/') {
    if (!(abs = strdup (path)))
      die (1, "out of memory");
    return abs;
  }
  if (!(cwd = getcwd (NULL, 0)))
    die (1, "the current directory: %s", strerror (errno));
  if (asprintf (&abs, "%s/%s", cwd, path) < 0)
    die (1, "out of memory");
  free (cwd);
  return abs;
}
