/* test_message.c — message.c against a fake peer on a socketpair: one
 * sendmsg per message with its fds, and reply validation (wrong code,
 * wrong flags, oversize size field, short reply then close, no reply,
 * stray fds closed, a failed receive, refused ack), and sends that meet
 * a full socket (drained late, or never). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "internal.h"

static int sv[2];   /* sv[0]: client (code under test), sv[1]: fake peer */

static int
setup (void **state)
{
  (void) state;
  return socketpair (AF_UNIX, SOCK_STREAM, 0, sv);
}

static int
teardown (void **state)
{
  (void) state;
  close (sv[0]);
  close (sv[1]);
  return 0;
}

/* The peer writes a reply header (+ payload), optionally with fds. */
static void
peer_reply (uint32_t request, uint32_t flags, uint32_t size,
            const void *payload, size_t payload_len, const int *fds, int nfds)
{
  struct vhost_user_header h = { request, flags, size };
  struct iovec iov[2] = { { &h, sizeof h }, { (void *) payload, payload_len } };
  char control[CMSG_SPACE (32 * sizeof (int))];
  struct msghdr msg = { .msg_iov = iov, .msg_iovlen = payload_len ? 2 : 1 };

  if (nfds) {
    memset (control, 0, sizeof control);
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE (nfds * sizeof (int));
    struct cmsghdr *c = CMSG_FIRSTHDR (&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN (nfds * sizeof (int));
    memcpy (CMSG_DATA (c), fds, nfds * sizeof (int));
  }
  assert_true (sendmsg (sv[1], &msg, 0) > 0);
}

/* The peer sends len bytes with one fd attached. */
static void
send_part_with_fd (const void *bytes, size_t len, int fd)
{
  struct iovec iov = { (void *) bytes, len };
  char control[CMSG_SPACE (sizeof (int))];
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = control,
                        .msg_controllen = sizeof control };
  struct cmsghdr *c = CMSG_FIRSTHDR (&msg);

  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN (sizeof (int));
  memcpy (CMSG_DATA (c), &fd, sizeof fd);
  assert_int_equal (sendmsg (sv[1], &msg, 0), (ssize_t) len);
}

static void
test_send_one_message_with_fds (void **state)
{
  uint64_t v = 0x1234;
  int fd = dup (0), got_fd = -1;
  char buf[64], control[CMSG_SPACE (sizeof (int))];
  struct iovec iov = { buf, sizeof buf };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = control,
                        .msg_controllen = sizeof control };
  struct vhost_user_header h;

  (void) state;
  assert_int_equal (vu_send (sv[0], VHOST_USER_SET_VRING_KICK, 0, &v,
                             sizeof v, &fd, 1, 1000), 0);
  assert_int_equal (recvmsg (sv[1], &msg, 0), 12 + 8);
  memcpy (&h, buf, sizeof h);
  assert_int_equal (h.request, VHOST_USER_SET_VRING_KICK);
  assert_int_equal (h.flags, VHOST_USER_VERSION);
  assert_int_equal (h.size, 8);
  assert_non_null (CMSG_FIRSTHDR (&msg));
  memcpy (&got_fd, CMSG_DATA (CMSG_FIRSTHDR (&msg)), sizeof got_fd);
  assert_true (got_fd >= 0);
  close (got_fd);
  close (fd);
}

static void
test_good_reply (void **state)
{
  uint64_t v = 0xabcdef, out = 0;

  (void) state;
  peer_reply (VHOST_USER_GET_FEATURES, 0x5, 8, &v, 8, NULL, 0);
  assert_int_equal (vu_recv_reply (sv[0], VHOST_USER_GET_FEATURES, &out, 8,
                                   8, NULL, 1000), 0);
  assert_int_equal (out, 0xabcdef);
}

static void
test_wrong_code_flags_size (void **state)
{
  uint64_t v = 1, out;

  (void) state;
  peer_reply (VHOST_USER_GET_QUEUE_NUM, 0x5, 8, &v, 8, NULL, 0);
  assert_int_equal (vu_recv_reply (sv[0], VHOST_USER_GET_FEATURES, &out, 8,
                                   8, NULL, 1000), -EPROTO);
  assert_non_null (strstr (vublk_get_error (), "GET_FEATURES"));

  peer_reply (VHOST_USER_GET_FEATURES, 0x1, 8, &v, 8, NULL, 0);
  assert_int_equal (vu_recv_reply (sv[1 - 1], VHOST_USER_GET_FEATURES, &out,
                                   8, 8, NULL, 1000), -EPROTO);
  assert_non_null (strstr (vublk_get_error (), "flags"));
}

static void
test_oversize_size_field (void **state)
{
  uint64_t out;

  (void) state;
  peer_reply (VHOST_USER_GET_CONFIG, 0x5, 0xffffffff, NULL, 0, NULL, 0);
  assert_int_equal (vu_recv_reply (sv[0], VHOST_USER_GET_CONFIG, &out, 0, 8,
                                   NULL, 1000), -EPROTO);
  assert_non_null (strstr (vublk_get_error (), "size"));
}

static void
test_short_reply_then_close (void **state)
{
  uint64_t out;

  (void) state;
  assert_int_equal (write (sv[1], "\x01\x00\x00", 3), 3);
  shutdown (sv[1], SHUT_WR);
  assert_int_equal (vu_recv_reply (sv[0], VHOST_USER_GET_FEATURES, &out, 8,
                                   8, NULL, 1000), -ECONNRESET);
}

static void
test_no_reply_times_out (void **state)
{
  uint64_t out, t0 = now_ns ();

  (void) state;
  assert_int_equal (vu_recv_reply (sv[0], VHOST_USER_GET_FEATURES, &out, 8,
                                   8, NULL, 200), -ETIMEDOUT);
  assert_true (now_ns () - t0 < 2000000000ull);
  assert_non_null (strstr (vublk_get_error (), "no reply"));
}

static void *
header_late (void *arg)
{
  (void) arg;
  usleep (150000);
  peer_reply (VHOST_USER_GET_FEATURES, 0x5, 8, NULL, 0, NULL, 0);
  return NULL;
}

/* A header that comes 150 ms late, then a payload that never does: the
 * message names the whole deadline, not what was left of it. */
static void
test_payload_times_out_naming_the_deadline (void **state)
{
  uint64_t out;
  pthread_t t;

  (void) state;
  assert_int_equal (pthread_create (&t, NULL, header_late, NULL), 0);
  assert_int_equal (vu_recv_reply (sv[0], VHOST_USER_GET_FEATURES, &out, 8,
                                   8, NULL, 400), -ETIMEDOUT);
  pthread_join (t, NULL);
  assert_non_null (strstr (vublk_get_error (), "no reply within 400 ms"));
}

static void
test_stray_fds_are_closed (void **state)
{
  uint64_t v = 7, out;
  int fds[4], before, after = 0;

  (void) state;
  for (int i = 0; i < 4; i++)
    fds[i] = dup (0);
  peer_reply (VHOST_USER_GET_FEATURES, 0x5, 8, &v, 8, fds, 4);
  for (int i = 0; i < 4; i++)
    close (fds[i]);
  before = dup (0);          /* lowest free fd before receiving */
  close (before);
  assert_int_equal (vu_recv_reply (sv[0], VHOST_USER_GET_FEATURES, &out, 8,
                                   8, NULL, 1000), 0);
  after = dup (0);           /* the received fds must be closed again */
  close (after);
  assert_int_equal (before, after);
}

/* A receive that fails (the peer closed with our request unread: ECONNRESET)
 * after one that brought an fd: the error is the receive's, and nothing
 * is closed on the failed receive's behalf (its control buffer is stale). */
static void
test_failed_receive_closes_nothing (void **state)
{
  uint32_t part = VHOST_USER_GET_FEATURES;
  uint64_t out;
  int passed = dup (0);

  (void) state;
  assert_int_equal (vu_send (sv[0], VHOST_USER_GET_FEATURES, 0, NULL, 0,
                             NULL, 0, 1000), 0);
  send_part_with_fd (&part, sizeof part, passed);  /* 4 of the header's 12 */
  close (passed);
  close (sv[1]);             /* unread data on its side: a reset for us */
  sv[1] = dup (0);           /* for teardown */
  assert_int_equal (vu_recv_reply (sv[0], VHOST_USER_GET_FEATURES, &out, 8,
                                   8, NULL, 1000), -ECONNRESET);
  assert_non_null (strstr (vublk_get_error (), "receive"));
}

/* A peer that never reads: the sends fill its socket, and then the next
 * one gives up at its deadline with a message saying why. */
static void
test_send_to_a_peer_that_never_reads_times_out (void **state)
{
  static uint8_t payload[VHOST_USER_MAX_PAYLOAD];
  uint64_t t0 = 0;
  int err = 0;

  (void) state;
  for (int i = 0; i < 100000 && !err; i++) {
    t0 = now_ns ();
    err = vu_send (sv[0], VHOST_USER_SET_MEM_TABLE, 0, payload,
                   sizeof payload, NULL, 0, 200);
  }
  assert_int_equal (err, -ETIMEDOUT);
  assert_true (now_ns () - t0 >= 150000000ull);
  assert_true (now_ns () - t0 < 2000000000ull);
  assert_non_null (strstr (vublk_get_error (), "read nothing for 200 ms"));
}

#define SLOW_READER_MESSAGES 64

/* Reads SLOW_READER_MESSAGES messages of the largest payload after a
 * pause, checking each header and counting the fds that came along. */
static void *
slow_reader (void *arg)
{
  static uint8_t buf[SLOW_READER_MESSAGES
                     * (12 + VHOST_USER_MAX_PAYLOAD)];
  size_t want = sizeof buf, have = 0;
  int *fds_seen = arg;

  usleep (100000);
  while (have < want) {
    char control[CMSG_SPACE (sizeof (int))];
    struct iovec iov = { buf + have, want - have };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                          .msg_control = control,
                          .msg_controllen = sizeof control };
    ssize_t r = recvmsg (sv[1], &msg, 0);
    struct cmsghdr *c;

    if (r <= 0)
      return NULL;
    for (c = CMSG_FIRSTHDR (&msg); c; c = CMSG_NXTHDR (&msg, c)) {
      int fd;
      memcpy (&fd, CMSG_DATA (c), sizeof fd);
      close (fd);
      ++*fds_seen;
    }
    have += r;
  }
  for (int i = 0; i < SLOW_READER_MESSAGES; i++) {
    struct vhost_user_header h;

    memcpy (&h, buf + i * (12 + VHOST_USER_MAX_PAYLOAD), sizeof h);
    if (h.request != VHOST_USER_SET_MEM_TABLE
        || h.size != VHOST_USER_MAX_PAYLOAD
        || buf[i * (12 + VHOST_USER_MAX_PAYLOAD) + 12] != (uint8_t) i)
      return NULL;
  }
  return buf;
}

/* Messages larger than what the socket holds, to a peer that reads late:
 * each arrives whole and in order, its fd exactly once. */
static void
test_send_waits_for_a_full_socket_to_drain (void **state)
{
  static uint8_t payload[VHOST_USER_MAX_PAYLOAD];
  int sndbuf = 4096, fd = 0, fds_seen = 0;
  pthread_t t;
  void *ok;

  (void) state;
  setsockopt (sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  assert_int_equal (pthread_create (&t, NULL, slow_reader, &fds_seen), 0);
  for (int i = 0; i < SLOW_READER_MESSAGES; i++) {
    payload[0] = i;
    assert_int_equal (vu_send (sv[0], VHOST_USER_SET_MEM_TABLE, 0, payload,
                               sizeof payload, &fd, 1, 5000), 0);
  }
  pthread_join (t, &ok);
  assert_non_null (ok);
  assert_int_equal (fds_seen, SLOW_READER_MESSAGES);
}

static void
test_refused_ack (void **state)
{
  uint64_t nack = 1;

  (void) state;
  peer_reply (VHOST_USER_SET_MEM_TABLE, 0x5, 8, &nack, 8, NULL, 0);
  assert_int_equal (vu_send_checked (sv[0], VHOST_USER_SET_MEM_TABLE, NULL,
                                     0, NULL, 0, true, 1000), -EIO);
  assert_non_null (strstr (vublk_get_error (), "refused"));
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_send_one_message_with_fds, setup, teardown),
    cmocka_unit_test_setup_teardown (test_good_reply, setup, teardown),
    cmocka_unit_test_setup_teardown (test_wrong_code_flags_size, setup, teardown),
    cmocka_unit_test_setup_teardown (test_oversize_size_field, setup, teardown),
    cmocka_unit_test_setup_teardown (test_short_reply_then_close, setup, teardown),
    cmocka_unit_test_setup_teardown (test_no_reply_times_out, setup, teardown),
    cmocka_unit_test_setup_teardown (test_payload_times_out_naming_the_deadline,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_stray_fds_are_closed, setup, teardown),
    cmocka_unit_test_setup_teardown (test_failed_receive_closes_nothing,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown
      (test_send_to_a_peer_that_never_reads_times_out, setup, teardown),
    cmocka_unit_test_setup_teardown
      (test_send_waits_for_a_full_socket_to_drain, setup, teardown),
    cmocka_unit_test_setup_teardown (test_refused_ack, setup, teardown),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
