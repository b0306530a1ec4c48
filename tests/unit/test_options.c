/* test_options.c — vublk_open refuses out-of-range options before it
 * touches the socket, naming what was wrong; the defaults are as
 * documented; options set by name parse and bound what users type; a
 * program built with a shorter (older) struct gets defaults for the rest.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "vublk.h"

static void
test_defaults (void **state)
{
  struct vublk_options o;

  (void) state;
  memset (&o, 0x5a, sizeof o);
  vublk_options_init (&o);
  assert_int_equal (o.num_queues, 0);
  assert_int_equal (o.queue_size, 256);
  assert_false (o.poll);
  assert_int_equal (o.pool_size, 64u << 20);
  assert_int_equal (o.spin_us, 0);
}

/* Opens a socket path that does not exist with o: the option check must
 * fail first, with EINVAL and a message containing what. */
static void
expect_refused (const struct vublk_options *o, const char *what)
{
  assert_null (vublk_open ("/nonexistent/vublk-test.sock", o));
  assert_int_equal (vublk_get_errno (), EINVAL);
  assert_non_null (strstr (vublk_get_error (), what));
}

static void
test_out_of_range (void **state)
{
  struct vublk_options o;

  (void) state;
  vublk_options_init (&o);
  o.spin_us = 10001;
  expect_refused (&o, "spin: 10001 is outside 0..10000");
  vublk_options_init (&o);
  o.queue_size = 100;
  expect_refused (&o, "queue-size: 100 is not a power of two");
  vublk_options_init (&o);
  o.pool_size = 1000;
  expect_refused (&o, "pool-size: 1000 is outside");
  vublk_options_init (&o);
  o.request_timeout = -1;
  expect_refused (&o, "request-timeout: -1 is outside");
  vublk_options_init (&o);
  o.ring = (enum vublk_ring) 7;
  expect_refused (&o, "ring: layout 7");
  /* Not prepared by vublk_options_init: refused, not read as garbage. */
  memset (&o, 0, sizeof o);
  expect_refused (&o, "vublk_options_init");
  /* In range, the failure is the missing socket, not the options. */
  vublk_options_init (&o);
  o.spin_us = 10000;
  o.connect_timeout = 0.1;
  assert_null (vublk_open ("/nonexistent/vublk-test.sock", &o));
  assert_int_not_equal (vublk_get_errno (), EINVAL);
}

/* vublk_options_set (o, name, value) must fail with EINVAL and a
 * message containing what. */
static void
expect_set_refused (struct vublk_options *o, const char *name,
                    const char *value, const char *what)
{
  assert_int_equal (vublk_options_set (o, name, value), -EINVAL);
  assert_int_equal (vublk_get_errno (), EINVAL);
  if (!strstr (vublk_get_error (), what))
    fail_msg ("'%s' does not contain '%s'", vublk_get_error (), what);
}

static void
test_set_by_name (void **state)
{
  struct vublk_options o;

  (void) state;
  vublk_options_init (&o);
  assert_int_equal (vublk_options_set (&o, "queues", "3"), 0);
  assert_int_equal (o.num_queues, 3);
  assert_int_equal (vublk_options_set (&o, "num-queues", "2"), 0);
  assert_int_equal (o.num_queues, 2);
  assert_int_equal (vublk_options_set (&o, "queue-size", "512"), 0);
  assert_int_equal (o.queue_size, 512);
  assert_int_equal (vublk_options_set (&o, "pool-size", "128M"), 0);
  assert_int_equal (o.pool_size, 128u << 20);
  assert_int_equal (vublk_options_set (&o, "pool-size", "2GiB"), 0);
  assert_int_equal (o.pool_size, 2ull << 30);
  assert_int_equal (vublk_options_set (&o, "reconnect-timeout", "2.5"), 0);
  assert_true (o.reconnect_timeout == 2.5);
  assert_int_equal (vublk_options_set (&o, "poll", "on"), 0);
  assert_true (o.poll);
  assert_int_equal (vublk_options_set (&o, "poll", "0"), 0);
  assert_false (o.poll);
  assert_int_equal (vublk_options_set (&o, "ring", "packed"), 0);
  assert_int_equal (o.ring, VUBLK_RING_PACKED);
  assert_int_equal (vublk_options_set (&o, "memory", "hugetlb"), 0);
  assert_int_equal (o.memory, VUBLK_MEMORY_HUGETLB);
  assert_int_equal (vublk_options_set (&o, "spin", "10000"), 0);
  assert_int_equal (o.spin_us, 10000);

  expect_set_refused (&o, "queues", "0", "queues: '0' is outside 1..64");
  expect_set_refused (&o, "queues", "65", "outside 1..64");
  expect_set_refused (&o, "queues", "2x", "queues: '2x' is not a whole number");
  expect_set_refused (&o, "queues", "-1", "not a whole number");
  expect_set_refused (&o, "queues", "1.5", "not a whole number");
  /* Decimal only: strtod alone would take hex and exponents. */
  expect_set_refused (&o, "queues", "0x1", "not a whole number");
  expect_set_refused (&o, "queues", "1e0", "not a whole number");
  expect_set_refused (&o, "queue-size", ".8e3", "not a whole number");
  expect_set_refused (&o, "connect-timeout", "0x1", "not a number of seconds");
  expect_set_refused (&o, "pool-size", "1e6", "not a size");
  expect_set_refused (&o, "queue-size", "100", "not a power of two");
  expect_set_refused (&o, "pool-size", "1k", "pool-size: '1k' is outside");
  expect_set_refused (&o, "pool-size", "12Q", "is not a size");
  expect_set_refused (&o, "connect-timeout", "0", "outside 0.001..3600");
  expect_set_refused (&o, "request-timeout", "", "not a number of seconds");
  expect_set_refused (&o, "request-timeout", "nan", "not a number");
  expect_set_refused (&o, "ring", "SPLIT", "ring: 'SPLIT' is not auto, split or packed");
  expect_set_refused (&o, "memory", "huge", "neither normal nor hugetlb");
  expect_set_refused (&o, "poll", "maybe", "poll: 'maybe' is not on or off");
  expect_set_refused (&o, "bogus", "1", "unknown option 'bogus'");
  /* A refused value leaves the field as it was. */
  assert_int_equal (o.num_queues, 2);
  assert_int_equal (o.ring, VUBLK_RING_PACKED);
}

/* Every option has a name, a hint and help, and each name is accepted. */
static void
test_option_list (void **state)
{
  const struct vublk_option_info *info;
  struct vublk_options o;
  unsigned n = 0;

  (void) state;
  vublk_options_init (&o);
  while ((info = vublk_option_info (n))) {
    assert_non_null (info->name);
    assert_non_null (info->value_hint);
    assert_true (strlen (info->help) > 10);
    /* Known: the failure, if any, is about the value. */
    if (vublk_options_set (&o, info->name, "?") == -EINVAL)
      assert_null (strstr (vublk_get_error (), "unknown option"));
    n++;
  }
  assert_true (n >= 11);
  assert_null (vublk_option_info (n));
}

/* A program built against an older vublk.h knows only a prefix of the
 * struct: the library must use defaults for the rest, not read beyond
 * what the program has. */
static void
test_older_struct (void **state)
{
  struct vublk_options big;
  size_t old_size = offsetof (struct vublk_options, memory);

  (void) state;
  memset (&big, 0x5a, sizeof big);     /* beyond old_size: garbage */
  vublk_options_init_size (&big, old_size);
  assert_int_equal (big.struct_size, old_size);
  assert_int_equal (big.queue_size, 256);
  /* The garbage past old_size (memory = 0x5a5a5a5a) must not be read:
   * the open fails on the socket, not on the options. */
  big.connect_timeout = 0.1;
  assert_null (vublk_open ("/nonexistent/vublk-test.sock", &big));
  assert_int_not_equal (vublk_get_errno (), EINVAL);
  /* Setting a field the old struct does not have is refused. */
  assert_int_equal (vublk_options_set (&big, "memory", "hugetlb"), -EINVAL);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_defaults),
    cmocka_unit_test (test_out_of_range),
    cmocka_unit_test (test_set_by_name),
    cmocka_unit_test (test_option_list),
    cmocka_unit_test (test_older_struct),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
