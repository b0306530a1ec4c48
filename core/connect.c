/* connect.c — opening the control socket with a deadline.  A UNIX socket
 * whose listen backlog is full makes a blocking connect() wait forever
 * (qemu-storage-daemon serves one client and leaves one more waiting), so
 * the connect is non-blocking and retried until the deadline, then
 * reported as a busy backend (or a frozen one: its backlog fills with the
 * connections it never accepts, our own earlier attempts included). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

/* How long a connect() keeps retrying while the backend's listen backlog
 * is full, between tries. */
#define BUSY_RETRY_MS 20

/* Connects sock to addr within timeout_ms.  A UNIX socket whose backlog
 * is full refuses a non-blocking connect with EAGAIN (a blocking one would
 * wait forever): that is a busy backend, retried until the deadline.
 * Returns 0 or -errno with the error set. */
static int
connect_with_deadline (struct vublk *dev, int sock,
                       const struct sockaddr_un *addr, int timeout_ms)
{
  int waited = timeout_ms;

  for (;;) {
    int err, pause = BUSY_RETRY_MS;

    if (connect (sock, (const struct sockaddr *) addr, sizeof *addr) == 0)
      return 0;
    switch (errno) {
    case EINTR:
      continue;
    case EINPROGRESS: {
      socklen_t len = sizeof err;

      err = vu_wait (sock, POLLOUT, &timeout_ms, "connect");
      if (err == -ETIMEDOUT)
        break;
      if (err)
        return err;
      if (getsockopt (sock, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
        return set_error_errno (errno, "%s: connect", dev->socket_path);
      if (err == 0)
        return 0;
      if (err != EAGAIN)
        return set_error_errno (err, "%s: connect", dev->socket_path);
      break;
    }
    case EAGAIN:
      if (timeout_ms == 0)
        break;
      if (pause > timeout_ms)
        pause = timeout_ms;
      err = vu_wait (-1, 0, &pause, "connect");
      if (err != -ETIMEDOUT)
        return err;
      timeout_ms -= timeout_ms < BUSY_RETRY_MS ? timeout_ms : BUSY_RETRY_MS;
      continue;
    case ECONNREFUSED:
      return set_error (ECONNREFUSED, "%s: connect: %s (nothing listens on "
                        "it: a backend that exited leaves its socket file "
                        "behind)", dev->socket_path, strerror (ECONNREFUSED));
    default:
      return set_error_errno (errno, "%s: connect", dev->socket_path);
    }
    return set_error (EBUSY, "%s: the backend is busy or not responding: "
                      "it accepted no connection within %d ms (it serves "
                      "one client at a time and may be serving another, "
                      "or it is frozen)", dev->socket_path, waited);
  }
}

int
connect_socket (struct vublk *dev, int timeout_ms)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  struct stat st;
  int sock, err;

  if (strlen (dev->socket_path) >= sizeof addr.sun_path)
    return set_error (ENAMETOOLONG, "%s: socket path too long",
                      dev->socket_path);
  if (stat (dev->socket_path, &st) == -1)
    return set_error_errno (errno, "%s", dev->socket_path);
  if (!S_ISSOCK (st.st_mode))
    return set_error (ENOTSOCK, "%s: not a UNIX socket", dev->socket_path);
  strcpy (addr.sun_path, dev->socket_path);
  sock = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (sock == -1)
    return set_error_errno (errno, "socket");
  err = connect_with_deadline (dev, sock, &addr, timeout_ms);
  /* Messages are small and every reply is awaited with poll(): the rest
   * of the protocol code expects a blocking socket. */
  if (!err && fcntl (sock, F_SETFL, 0) == -1)
    err = set_error_errno (errno, "%s: fcntl", dev->socket_path);
  if (err) {
    close (sock);
    return err;
  }
  dev->sock = sock;
  return 0;
}
