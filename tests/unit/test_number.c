/* test_number.c — number.c: decimal digits and one point only, size
 * suffixes only when asked for, and every whole number below 2^64 read
 * exactly (the tools range-check sizes near the top of that range). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "number.h"

/* number_parse (text, size_suffix) reads want exactly. */
static void
reads_as (const char *text, bool size_suffix, long double want)
{
  long double v = -1;

  if (!number_parse (text, size_suffix, &v))
    fail_msg ("'%s' refused", text);
  if (v != want)
    fail_msg ("'%s' read as %Lg, not %Lg", text, v, want);
}

/* number_parse (text, size_suffix) refuses text and leaves *out alone. */
static void
refused (const char *text, bool size_suffix)
{
  long double v = -1;

  if (number_parse (text, size_suffix, &v))
    fail_msg ("'%s' accepted as %Lg", text, v);
  assert_true (v == -1);
}

static void
test_plain_numbers (void **state)
{
  (void) state;
  reads_as ("0", false, 0);
  reads_as ("007", false, 7);
  reads_as ("2.5", false, 2.5L);
  reads_as (".5", false, 0.5L);
  reads_as ("3.", false, 3);
  reads_as ("18446744073709551615", false, (long double) UINT64_MAX);
  reads_as ("18446744073709551616", false, 18446744073709551616.0L);
  /* What strtod would take and no user means. */
  refused ("", false);
  refused (".", false);
  refused (" 1", false);
  refused ("+1", false);
  refused ("-1", false);
  refused ("0x10", false);
  refused ("1e3", false);
  refused ("inf", false);
  refused ("nan", false);
  refused ("1.2.3", false);
  refused ("1 ", false);
  /* Suffixes only for sizes. */
  refused ("1k", false);
}

static void
test_size_suffixes (void **state)
{
  (void) state;
  reads_as ("4k", true, 4096);
  reads_as ("4K", true, 4096);
  reads_as ("2MiB", true, 2 << 20);
  reads_as ("2MB", true, 2 << 20);
  reads_as ("1.5k", true, 1536);
  reads_as ("1g", true, 1ull << 30);
  reads_as ("16T", true, 16ull << 40);
  reads_as ("4096", true, 4096);
  refused ("4kb", true);
  refused ("4Bk", true);
  refused ("4iB", true);
  refused ("4P", true);
  refused ("4kiBx", true);
  refused ("k", true);
  refused ("1e3k", true);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_plain_numbers),
    cmocka_unit_test (test_size_suffixes),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
