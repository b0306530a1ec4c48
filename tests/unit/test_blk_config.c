/* test_blk_config.c — blk_config.c: fields honoured only under their
 * feature bit and only when the config is long enough; absurd values
 * (blk_size not a power of two or out of range, overflowing capacity,
 * zero queues) rejected; topology scaled by the block size. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"

#define F(bit) (1ull << (bit))

static void
put32 (uint8_t *d, unsigned off, uint32_t v)
{
  memcpy (d + off, &v, 4);
}

/* A 60-byte config: capacity 2048 sectors, size_max 64 KiB, seg_max 126,
 * blk_size 4096, topology exp 1 / align 0 / min 1 / opt 8, wce 1,
 * 4 queues, discard and write-zeroes limits. */
static void
sample (uint8_t *d)
{
  uint64_t cap = 2048;
  uint16_t nq = 4, min_io = 1;

  memset (d, 0, VIRTIO_BLK_CONFIG_SIZE);
  memcpy (d, &cap, 8);
  put32 (d, 8, 65536);
  put32 (d, 12, 126);
  put32 (d, 20, 4096);
  d[24] = 1;
  memcpy (d + 26, &min_io, 2);
  put32 (d, 28, 8);
  d[32] = 1;
  memcpy (d + 34, &nq, 2);
  put32 (d, 36, 8192);
  put32 (d, 40, 1);
  put32 (d, 44, 8);
  put32 (d, 48, 4096);
  put32 (d, 52, 1);
  d[56] = 1;
}

static void
test_all_features (void **state)
{
  uint8_t d[VIRTIO_BLK_CONFIG_SIZE];
  struct blk_config c;
  uint64_t f = F (VIRTIO_BLK_F_SIZE_MAX) | F (VIRTIO_BLK_F_SEG_MAX)
               | F (VIRTIO_BLK_F_BLK_SIZE) | F (VIRTIO_BLK_F_TOPOLOGY)
               | F (VIRTIO_BLK_F_CONFIG_WCE) | F (VIRTIO_BLK_F_MQ)
               | F (VIRTIO_BLK_F_DISCARD) | F (VIRTIO_BLK_F_WRITE_ZEROES);

  (void) state;
  sample (d);
  assert_int_equal (blk_config_parse (&c, d, sizeof d, f), 0);
  assert_int_equal (c.capacity, 2048);
  assert_int_equal (c.size_max, 65536);
  assert_int_equal (c.seg_max, 126);
  assert_int_equal (c.blk_size, 4096);
  assert_int_equal (c.physical_block_size, 8192);
  assert_int_equal (c.min_io_size, 4096);
  assert_int_equal (c.opt_io_size, 32768);
  assert_true (c.writeback);
  assert_int_equal (c.num_queues, 4);
  assert_int_equal (c.max_discard_sectors, 8192);
  assert_int_equal (c.discard_sector_alignment, 8);
  assert_int_equal (c.max_write_zeroes_sectors, 4096);
  assert_true (c.write_zeroes_may_unmap);
}

static void
test_fields_need_their_feature (void **state)
{
  uint8_t d[VIRTIO_BLK_CONFIG_SIZE];
  struct blk_config c;

  (void) state;
  sample (d);
  assert_int_equal (blk_config_parse (&c, d, sizeof d, 0), 0);
  assert_int_equal (c.capacity, 2048);
  assert_int_equal (c.size_max, 0);
  assert_int_equal (c.seg_max, 0);
  assert_int_equal (c.blk_size, 512);
  assert_int_equal (c.num_queues, 1);
  assert_int_equal (c.max_discard_sectors, 0);
  assert_false (c.write_zeroes_may_unmap);
  assert_false (c.writeback);            /* no FLUSH: write-through */
  assert_int_equal (blk_config_parse (&c, d, sizeof d,
                                      F (VIRTIO_BLK_F_FLUSH)), 0);
  assert_true (c.writeback);
}

static void
test_short_config (void **state)
{
  uint8_t d[VIRTIO_BLK_CONFIG_SIZE];
  struct blk_config c;

  (void) state;
  sample (d);
  assert_int_equal (blk_config_parse (&c, d, 7, 0), -EPROTO);
  /* Fields beyond the bytes given keep their defaults. */
  assert_int_equal (blk_config_parse (&c, d, 20,
                                      F (VIRTIO_BLK_F_BLK_SIZE)
                                      | F (VIRTIO_BLK_F_MQ)), 0);
  assert_int_equal (c.blk_size, 512);
  assert_int_equal (c.num_queues, 1);
}

static void
test_absurd_values (void **state)
{
  static const uint32_t bad_sizes[] = { 0, 3, 256, 511, 513, 3000, 131072 };
  uint8_t d[VIRTIO_BLK_CONFIG_SIZE];
  struct blk_config c;
  uint64_t huge = UINT64_MAX / 512 + 1;

  (void) state;
  for (unsigned i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
    sample (d);
    put32 (d, 20, bad_sizes[i]);
    assert_int_equal (blk_config_parse (&c, d, sizeof d,
                                        F (VIRTIO_BLK_F_BLK_SIZE)), -EPROTO);
  }
  sample (d);
  memcpy (d, &huge, 8);
  assert_int_equal (blk_config_parse (&c, d, sizeof d, 0), -EPROTO);
  /* The largest size an off_t holds, and one sector more. */
  huge = INT64_MAX / 512;
  sample (d);
  memcpy (d, &huge, 8);
  assert_int_equal (blk_config_parse (&c, d, sizeof d, 0), 0);
  huge++;
  memcpy (d, &huge, 8);
  assert_int_equal (blk_config_parse (&c, d, sizeof d, 0), -EPROTO);
  sample (d);
  d[34] = d[35] = 0;
  assert_int_equal (blk_config_parse (&c, d, sizeof d, F (VIRTIO_BLK_F_MQ)),
                    -EPROTO);
  /* An absurd topology exponent is ignored, not trusted. */
  sample (d);
  d[24] = 40;
  assert_int_equal (blk_config_parse (&c, d, sizeof d,
                                      F (VIRTIO_BLK_F_BLK_SIZE)
                                      | F (VIRTIO_BLK_F_TOPOLOGY)), 0);
  assert_int_equal (c.physical_block_size, 4096);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_all_features),
    cmocka_unit_test (test_fields_need_their_feature),
    cmocka_unit_test (test_short_config),
    cmocka_unit_test (test_absurd_values),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
