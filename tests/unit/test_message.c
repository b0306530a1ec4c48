/* test_message.c — message.c against a fake peer on a socketpair: one
 * sendmsg per message with its fds, and reply validation (wrong code,
 * wrong flags, oversize size field, short reply then close, no reply,
 * stray fds closed, refused ack). */
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
                             sizeof v, &fd, 1), 0);
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
    cmocka_unit_test_setup_teardown (test_refused_ack, setup, teardown),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
