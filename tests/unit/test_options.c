/* test_options.c — vublk_open refuses out-of-range options before it
 * touches the socket, naming what was wrong; the defaults are as
 * documented. */
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
  expect_refused (&o, "spin time 10001 us");
  vublk_options_init (&o);
  o.queue_size = 100;
  expect_refused (&o, "queue size 100");
  vublk_options_init (&o);
  o.pool_size = 1000;
  expect_refused (&o, "pool size");
  vublk_options_init (&o);
  o.request_timeout = -1;
  expect_refused (&o, "timeouts");
  /* In range, the failure is the missing socket, not the options. */
  vublk_options_init (&o);
  o.spin_us = 10000;
  o.connect_timeout = 0.1;
  assert_null (vublk_open ("/nonexistent/vublk-test.sock", &o));
  assert_int_not_equal (vublk_get_errno (), EINVAL);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_defaults),
    cmocka_unit_test (test_out_of_range),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
