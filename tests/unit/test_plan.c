/* test_plan.c — plan.c: aligned ranges, RMW edges, and chunking of reads,
 * writes, write-zeroes and discards, including an exhaustive check over
 * small ranges that chunks are aligned, contiguous and cover exactly. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "internal.h"

static const struct plan_limits lim512 = {
  .blk_size = 512, .max_transfer = 2048,
  .max_discard_bytes = 1024, .max_write_zeroes_bytes = 1536,
};

static void
test_init_ranges (void **state)
{
  struct io_plan p;

  (void) state;
  plan_init (&p, 4096, 8192, 4096);
  assert_int_equal (p.astart, 4096);
  assert_int_equal (p.aend, 12288);
  assert_false (plan_needs_rmw (&p));

  plan_init (&p, 100, 1, 512);          /* one byte inside one block */
  assert_int_equal (p.astart, 0);
  assert_int_equal (p.aend, 512);
  assert_true (p.head_partial && p.tail_partial);
  assert_true (p.istart >= p.iend);

  plan_init (&p, 512, 100, 512);        /* aligned start, short */
  assert_true (p.head_partial);
  plan_init (&p, 513, 1023, 512);       /* unaligned start, aligned end */
  assert_true (p.head_partial);
  assert_false (p.tail_partial);
  assert_int_equal (p.istart, 1024);
  assert_int_equal (p.iend, 1536);
}

static void
test_rw_chunks_respect_max_transfer (void **state)
{
  struct io_plan p;
  struct chunk c;
  uint64_t cursor, expect = 0;
  unsigned n = 0;

  (void) state;
  plan_init (&p, 0, 5000, 512);
  cursor = p.astart;
  while (plan_next_rw_chunk (&p, &lim512, VIRTIO_BLK_T_IN, &cursor, &c)) {
    assert_int_equal (c.offset, expect);
    assert_true (c.len <= lim512.max_transfer);
    expect += c.len;
    n++;
  }
  assert_int_equal (expect, 5120);
  assert_int_equal (n, 3);
}

static void
test_zero_chunks (void **state)
{
  struct io_plan p;
  struct chunk c;
  uint64_t cursor;
  unsigned writes = 0, zeroes = 0;

  (void) state;
  plan_init (&p, 100, 4000, 512);       /* [100, 4100): partial both ends */
  cursor = p.astart;
  while (plan_next_zero_chunk (&p, &lim512, &cursor, &c)) {
    if (c.type == VIRTIO_BLK_T_OUT) {
      assert_int_equal (c.len, 512);
      assert_true (c.offset == 0 || c.offset == 4096);
      writes++;
    }
    else {
      assert_int_equal (c.type, VIRTIO_BLK_T_WRITE_ZEROES);
      assert_true (c.len <= lim512.max_write_zeroes_bytes);
      zeroes++;
    }
  }
  assert_int_equal (writes, 2);
  assert_int_equal (zeroes, 3);         /* 3584 bytes in 1536-byte chunks */

  plan_init (&p, 10, 20, 512);          /* head and tail are one block */
  cursor = p.astart;
  assert_true (plan_next_zero_chunk (&p, &lim512, &cursor, &c));
  assert_int_equal (c.type, VIRTIO_BLK_T_OUT);
  assert_false (plan_next_zero_chunk (&p, &lim512, &cursor, &c));
}

static void
test_discard_only_inside (void **state)
{
  struct io_plan p;
  struct chunk c;
  uint64_t cursor;

  (void) state;
  plan_init (&p, 100, 300, 512);        /* no whole block */
  cursor = p.astart;
  assert_false (plan_next_discard_chunk (&p, &lim512, &cursor, &c));

  plan_init (&p, 100, 3000, 512);       /* whole blocks 512..3072 */
  cursor = p.astart;
  assert_true (plan_next_discard_chunk (&p, &lim512, &cursor, &c));
  assert_int_equal (c.offset, 512);
  assert_int_equal (c.len, 1024);
  assert_true (plan_next_discard_chunk (&p, &lim512, &cursor, &c));
  assert_int_equal (c.offset, 1536);
  assert_int_equal (c.len, 1024);
  assert_true (plan_next_discard_chunk (&p, &lim512, &cursor, &c));
  assert_int_equal (c.offset + c.len, 3072);
  assert_false (plan_next_discard_chunk (&p, &lim512, &cursor, &c));
}

/* For every start in [0, 3 blocks) and length in [1, 3 blocks], write and
 * write-zeroes chunks are block aligned, contiguous, within limits and
 * cover exactly the outward-aligned range. */
static void
test_exhaustive_small_ranges (void **state)
{
  (void) state;
  for (uint64_t start = 0; start < 1536; start += 7)
    for (uint64_t len = 1; len <= 1536; len += 5) {
      struct io_plan p;
      struct chunk c;
      uint64_t cursor, next;

      plan_init (&p, start, len, 512);
      assert_true (p.astart <= start && p.aend >= start + len);
      assert_true (p.aend - p.astart < len + 1024);
      for (int zero = 0; zero < 2; zero++) {
        cursor = next = p.astart;
        while (zero ? plan_next_zero_chunk (&p, &lim512, &cursor, &c)
                    : plan_next_rw_chunk (&p, &lim512, VIRTIO_BLK_T_OUT,
                                          &cursor, &c)) {
          assert_int_equal (c.offset % 512, 0);
          assert_int_equal (c.len % 512, 0);
          assert_int_equal (c.offset, next);
          assert_true (c.len > 0 && c.len <= 2048);
          next += c.len;
        }
        assert_int_equal (next, p.aend);
      }
    }
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_init_ranges),
    cmocka_unit_test (test_rw_chunks_respect_max_transfer),
    cmocka_unit_test (test_zero_chunks),
    cmocka_unit_test (test_discard_only_inside),
    cmocka_unit_test (test_exhaustive_small_ranges),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
