/* test_info.c — info.c's feature_list: names of virtio and vhost-user
 * protocol feature bits, comma separated, unnamed bits as "bit N", and a
 * buffer too small cut short but always terminated. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"

#define F(bit) (1ull << (bit))

static void
virtio_names (void **state)
{
  char buf[128];

  (void) state;
  feature_list (F (VIRTIO_BLK_F_FLUSH) | F (VIRTIO_RING_F_EVENT_IDX), false,
                buf, sizeof buf);
  assert_string_equal (buf, "FLUSH, EVENT_IDX");
  feature_list (F (VIRTIO_F_VERSION_1), false, buf, sizeof buf);
  assert_string_equal (buf, "VERSION_1");
}

static void
protocol_names (void **state)
{
  char buf[128];

  (void) state;
  feature_list (F (9) | F (3), true, buf, sizeof buf);
  assert_string_equal (buf, "REPLY_ACK, CONFIG");
}

static void
unnamed_and_none (void **state)
{
  char buf[128];

  (void) state;
  feature_list (F (63) | F (VIRTIO_BLK_F_MQ), false, buf, sizeof buf);
  assert_string_equal (buf, "MQ, bit 63");
  feature_list (0, false, buf, sizeof buf);
  assert_string_equal (buf, "");
}

static void
small_buffer (void **state)
{
  char buf[8];

  (void) state;
  memset (buf, 'x', sizeof buf);
  feature_list (F (VIRTIO_BLK_F_FLUSH) | F (VIRTIO_BLK_F_WRITE_ZEROES)
                | F (VIRTIO_RING_F_EVENT_IDX), false, buf, sizeof buf);
  assert_int_equal (strlen (buf), sizeof buf - 1);
  assert_memory_equal (buf, "FLUSH, ", 7);
  feature_list (F (VIRTIO_BLK_F_FLUSH), false, buf, 0);   /* writes nothing */
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (virtio_names),
    cmocka_unit_test (protocol_names),
    cmocka_unit_test (unnamed_and_none),
    cmocka_unit_test (small_buffer),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
