/* message.c — vhost-user message framing on the control socket.
 *
 * Each message goes out in one sendmsg() with its fds (qemu's server only
 * accepts fds that arrive with the header).  Every reply is checked: flags
 * exactly VERSION|REPLY, the request code we sent, the size we expect, and
 * a bounded payload.  Fds a peer attaches to a reply are closed, never
 * kept.  A reply that does not come within the timeout is an error: a
 * socket that speaks another protocol must not hang the caller.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

const char *
vu_request_name (uint32_t request)
{
  switch (request) {
  case VHOST_USER_GET_FEATURES: return "GET_FEATURES";
  case VHOST_USER_SET_FEATURES: return "SET_FEATURES";
  case VHOST_USER_SET_OWNER: return "SET_OWNER";
  case VHOST_USER_SET_MEM_TABLE: return "SET_MEM_TABLE";
  case VHOST_USER_SET_VRING_NUM: return "SET_VRING_NUM";
  case VHOST_USER_SET_VRING_ADDR: return "SET_VRING_ADDR";
  case VHOST_USER_SET_VRING_BASE: return "SET_VRING_BASE";
  case VHOST_USER_GET_VRING_BASE: return "GET_VRING_BASE";
  case VHOST_USER_SET_VRING_KICK: return "SET_VRING_KICK";
  case VHOST_USER_SET_VRING_CALL: return "SET_VRING_CALL";
  case VHOST_USER_SET_VRING_ERR: return "SET_VRING_ERR";
  case VHOST_USER_GET_PROTOCOL_FEATURES: return "GET_PROTOCOL_FEATURES";
  case VHOST_USER_SET_PROTOCOL_FEATURES: return "SET_PROTOCOL_FEATURES";
  case VHOST_USER_GET_QUEUE_NUM: return "GET_QUEUE_NUM";
  case VHOST_USER_SET_VRING_ENABLE: return "SET_VRING_ENABLE";
  case VHOST_USER_SET_BACKEND_REQ_FD: return "SET_BACKEND_REQ_FD";
  case VHOST_USER_GET_CONFIG: return "GET_CONFIG";
  case VHOST_USER_SET_CONFIG: return "SET_CONFIG";
  case VHOST_USER_GET_MAX_MEM_SLOTS: return "GET_MAX_MEM_SLOTS";
  case VHOST_USER_ADD_MEM_REG: return "ADD_MEM_REG";
  case VHOST_USER_REM_MEM_REG: return "REM_MEM_REG";
  default: return "unknown request";
  }
}

int
vu_send (int sock, uint32_t request, uint32_t flags, const void *payload,
         uint32_t size, const int *fds, int nfds, int timeout_ms)
{
  struct vhost_user_header hdr = {
    .request = request, .flags = VHOST_USER_VERSION | flags, .size = size,
  };
  struct iovec iov[2] = {
    { .iov_base = &hdr, .iov_len = sizeof hdr },
    { .iov_base = (void *) payload, .iov_len = size },
  };
  char control[CMSG_SPACE (MAX_FDS_PER_MSG * sizeof (int))];
  struct msghdr msg = { .msg_iov = iov, .msg_iovlen = size ? 2 : 1 };
  int total_ms = timeout_ms;

  if (nfds < 0 || nfds > MAX_FDS_PER_MSG || size > VHOST_USER_MAX_PAYLOAD)
    return set_error (EINVAL, "vhost-user %s: bad message size or fd count",
                      vu_request_name (request));
  if (nfds > 0) {
    struct cmsghdr *cmsg;

    memset (control, 0, sizeof control);
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE (nfds * sizeof (int));
    cmsg = CMSG_FIRSTHDR (&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN (nfds * sizeof (int));
    memcpy (CMSG_DATA (cmsg), fds, nfds * sizeof (int));
  }

  /* Never blocks in sendmsg: a backend that stops reading its socket
   * fills it, and then only the deadline ends the wait. */
  while (msg.msg_iovlen > 0) {
    ssize_t r = sendmsg (sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);

    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int err = vu_wait (sock, POLLOUT, &timeout_ms, vu_request_name (request));

      if (err == -ETIMEDOUT)
        return set_error (ETIMEDOUT, "vhost-user %s: the backend read "
                          "nothing for %d ms (its socket is full: frozen or "
                          "stuck)", vu_request_name (request), total_ms);
      if (err)
        return err;
      continue;
    }
    if (r == -1)
      return set_error_errno (errno, "vhost-user %s: send",
                              vu_request_name (request));
    /* The fds went with the first byte; the rest follows without them. */
    msg.msg_control = NULL;
    msg.msg_controllen = 0;
    while (msg.msg_iovlen > 0 && (size_t) r >= msg.msg_iov->iov_len) {
      r -= msg.msg_iov->iov_len;
      msg.msg_iov++;
      msg.msg_iovlen--;
    }
    if (msg.msg_iovlen > 0) {
      msg.msg_iov->iov_base = (uint8_t *) msg.msg_iov->iov_base + r;
      msg.msg_iov->iov_len -= r;
    }
  }
  return 0;
}

int
vu_check_reply_header (const struct vhost_user_header *hdr, uint32_t request,
                       uint32_t expected_size, uint32_t max_size)
{
  /* Bits above NEED_REPLY are reserved: zero in every vhost-user reply. */
  if ((hdr->flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION
      || hdr->flags > 0xfu)
    return set_error (EPROTO, "vhost-user %s: the reply is not vhost-user "
                      "(flags 0x%x): the socket's server speaks another "
                      "protocol (an NBD server?) or lost the message "
                      "framing", vu_request_name (request), hdr->flags);
  if (hdr->flags != (VHOST_USER_VERSION | VHOST_USER_REPLY_MASK))
    return set_error (EPROTO,
                      "vhost-user %s: reply has flags 0x%x, expected 0x%x",
                      vu_request_name (request), hdr->flags,
                      VHOST_USER_VERSION | VHOST_USER_REPLY_MASK);
  if (hdr->request != request)
    return set_error (EPROTO,
                      "vhost-user %s: reply is for request %u",
                      vu_request_name (request), hdr->request);
  if (expected_size ? hdr->size != expected_size : hdr->size > max_size)
    return set_error (EPROTO, "vhost-user %s: reply size %u, expected %u",
                      vu_request_name (request), hdr->size,
                      expected_size ? expected_size : max_size);
  return 0;
}

/* An eventfd that, once readable, makes every wait of this thread give up
 * (the control thread's wake fd: vublk_close must not wait for a reply
 * from a frozen backend).  -1: none. */
static __thread int tls_cancel_fd = -1;

void
vu_set_cancel_fd (int fd)
{
  tls_cancel_fd = fd;
}

int
vu_wait (int fd, short events, int *timeout_ms, const char *what)
{
  struct pollfd pfd[2] = {
    { .fd = fd, .events = events },
    { .fd = tls_cancel_fd, .events = POLLIN },
  };
  uint64_t start = now_ns ();
  int r;

  do
    r = poll (pfd, 2, *timeout_ms);
  while (r == -1 && errno == EINTR);
  if (r == -1)
    return set_error_errno (errno, "%s: poll", what);
  if (pfd[1].revents)
    return set_error (ECANCELED, "%s: cancelled (the device is closing)",
                      what);
  if (*timeout_ms >= 0) {
    int spent = (int) ((now_ns () - start) / 1000000);
    *timeout_ms = spent >= *timeout_ms ? 0 : *timeout_ms - spent;
  }
  if (r == 0)
    return -ETIMEDOUT;     /* the caller words the message */
  return 0;
}

/* Waits for sock to become readable within *timeout_ms (updated), part
 * of a wait of total_ms in all (named in the message).  Returns 0,
 * -ETIMEDOUT, -ECANCELED or -errno. */
static int
wait_readable (int sock, int *timeout_ms, int total_ms, uint32_t request)
{
  int waited = total_ms;
  int err = vu_wait (sock, POLLIN, timeout_ms, vu_request_name (request));

  if (err == -ETIMEDOUT)
    return set_error (ETIMEDOUT,
                      "vhost-user %s: no reply within %d ms: the backend is "
                      "busy serving another client (vhost-user-blk backends "
                      "serve one at a time), frozen, or this is not a "
                      "vhost-user-blk socket",
                      vu_request_name (request), waited);
  return err;
}

/* Reads exactly len bytes within *timeout_ms (updated; part of total_ms
 * in all), closing any fds that come with them. */
static int
read_exact (int sock, void *buf, size_t len, int *timeout_ms, int total_ms,
            uint32_t request)
{
  uint8_t *p = buf;

  while (len > 0) {
    char control[CMSG_SPACE (MAX_FDS_PER_MSG * sizeof (int) * 4)];
    struct iovec iov = { .iov_base = p, .iov_len = len };
    struct msghdr msg = {
      .msg_iov = &iov, .msg_iovlen = 1,
      .msg_control = control, .msg_controllen = sizeof control,
    };
    struct cmsghdr *cmsg;
    ssize_t r;
    int err;

    err = wait_readable (sock, timeout_ms, total_ms, request);
    if (err)
      return err;
    do
      r = recvmsg (sock, &msg, MSG_CMSG_CLOEXEC);
    while (r == -1 && errno == EINTR);
    if (r == -1)
      return set_error_errno (errno, "vhost-user %s: receive",
                              vu_request_name (request));
    /* Only a receive that succeeded filled the control buffer: after a
     * failed one it holds garbage, and closing "its" fds would close
     * numbers this process uses for something else. */
    for (cmsg = CMSG_FIRSTHDR (&msg); cmsg; cmsg = CMSG_NXTHDR (&msg, cmsg)) {
      if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
        size_t n = (cmsg->cmsg_len - CMSG_LEN (0)) / sizeof (int);
        int fds[MAX_FDS_PER_MSG * 4];

        if (n > ARRAY_SIZE (fds))
          n = ARRAY_SIZE (fds);
        memcpy (fds, CMSG_DATA (cmsg), n * sizeof (int));
        for (size_t i = 0; i < n; i++)
          close (fds[i]);
      }
    }
    if (r == 0)
      return set_error (ECONNRESET,
                        "vhost-user %s: backend closed the connection",
                        vu_request_name (request));
    p += r;
    len -= r;
  }
  return 0;
}

int
vu_recv_message (int sock, struct vhost_user_header *hdr, void *payload,
                 size_t payload_size, int timeout_ms)
{
  int total_ms = timeout_ms;
  int err = read_exact (sock, hdr, sizeof *hdr, &timeout_ms, total_ms, 0);

  if (err)
    return err;
  if (hdr->size > payload_size)
    return set_error (EPROTO, "vhost-user backend message %u: payload of "
                      "%u bytes, at most %zu expected", hdr->request,
                      hdr->size, payload_size);
  return hdr->size ? read_exact (sock, payload, hdr->size, &timeout_ms,
                                 total_ms, hdr->request)
                   : 0;
}

int
vu_recv_reply (int sock, uint32_t request, void *payload,
               uint32_t expected_size, uint32_t payload_size, uint32_t *got,
               int timeout_ms)
{
  struct vhost_user_header hdr;
  int total_ms = timeout_ms;
  int err;

  err = read_exact (sock, &hdr, sizeof hdr, &timeout_ms, total_ms, request);
  if (err)
    return err;
  err = vu_check_reply_header (&hdr, request, expected_size, payload_size);
  if (err)
    return err;
  if (hdr.size > 0) {
    err = read_exact (sock, payload, hdr.size, &timeout_ms, total_ms,
                      request);
    if (err)
      return err;
  }
  if (got)
    *got = hdr.size;
  return 0;
}

int
vu_send_checked (int sock, uint32_t request, const void *payload,
                 uint32_t size, const int *fds, int nfds, bool need_reply,
                 int timeout_ms)
{
  uint64_t ack;
  int err;

  err = vu_send (sock, request, need_reply ? VHOST_USER_NEED_REPLY_MASK : 0,
                 payload, size, fds, nfds, timeout_ms);
  if (err || !need_reply)
    return err;
  err = vu_recv_reply (sock, request, &ack, sizeof ack, sizeof ack, NULL,
                       timeout_ms);
  if (err)
    return err;
  if (ack != 0)
    return set_error (EIO, "vhost-user %s: backend refused (ack %llu)",
                      vu_request_name (request), (unsigned long long) ack);
  return 0;
}

int
vu_get_u64 (int sock, uint32_t request, uint64_t *value, int timeout_ms)
{
  int err;

  err = vu_send (sock, request, 0, NULL, 0, NULL, 0, timeout_ms);
  if (err)
    return err;
  return vu_recv_reply (sock, request, value, sizeof *value, sizeof *value,
                        NULL, timeout_ms);
}

int
vu_set_u64 (int sock, uint32_t request, uint64_t value, bool need_reply,
            int timeout_ms)
{
  return vu_send_checked (sock, request, &value, sizeof value, NULL, 0,
                          need_reply, timeout_ms);
}
