/* blk_config.c — virtio-blk config space: read each field only if its
 * feature was negotiated, and bound every value before the rest of the
 * library relies on it. */
#include <errno.h>
#include <string.h>

#include "internal.h"

static uint32_t
le32_at (const uint8_t *p)
{
  return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t) p[3] << 24;
}

static uint16_t
le16_at (const uint8_t *p)
{
  return p[0] | p[1] << 8;
}

static uint64_t
le64_at (const uint8_t *p)
{
  return le32_at (p) | (uint64_t) le32_at (p + 4) << 32;
}

static bool
has (uint64_t features, unsigned bit)
{
  return features & (1ull << bit);
}

int
blk_config_parse (struct blk_config *cfg, const uint8_t *d, uint32_t len,
                  uint64_t features)
{
  memset (cfg, 0, sizeof *cfg);
  if (len < 8)
    return set_error (EPROTO, "virtio-blk config of %u bytes has no capacity",
                      len);
  cfg->capacity = le64_at (d);
  /* Sizes are signed 64-bit numbers in files (off_t) and NBD exports. */
  if (cfg->capacity > INT64_MAX / SECTOR_SIZE)
    return set_error (EPROTO, "virtio-blk capacity %llu sectors is more "
                      "than 2^63 bytes, larger than a file or an NBD export "
                      "can be", (unsigned long long) cfg->capacity);

  cfg->blk_size = SECTOR_SIZE;
  if (has (features, VIRTIO_BLK_F_SIZE_MAX) && len >= 12)
    cfg->size_max = le32_at (d + 8);
  if (has (features, VIRTIO_BLK_F_SEG_MAX) && len >= 16)
    cfg->seg_max = le32_at (d + 12);
  if (has (features, VIRTIO_BLK_F_BLK_SIZE) && len >= 24) {
    uint32_t b = le32_at (d + 20);
    if (b < SECTOR_SIZE || b > 65536 || (b & (b - 1)))
      return set_error (EPROTO, "virtio-blk blk_size %u is not a power of "
                        "two between 512 and 65536", b);
    cfg->blk_size = b;
  }
  cfg->physical_block_size = cfg->blk_size;
  if (has (features, VIRTIO_BLK_F_TOPOLOGY) && len >= 32) {
    unsigned exp = d[24];
    if (exp <= 8 && ((uint64_t) cfg->blk_size << exp) <= (1u << 20))
      cfg->physical_block_size = cfg->blk_size << exp;
    cfg->alignment_offset = (uint32_t) d[25] * cfg->blk_size;
    cfg->min_io_size = (uint32_t) le16_at (d + 26) * cfg->blk_size;
    cfg->opt_io_size = (uint32_t) ((uint64_t) le32_at (d + 28) * cfg->blk_size
                                   > UINT32_MAX
                                   ? 0 : le32_at (d + 28) * cfg->blk_size);
  }
  if (has (features, VIRTIO_BLK_F_CONFIG_WCE) && len >= 33)
    cfg->writeback = d[32] != 0;
  else
    cfg->writeback = has (features, VIRTIO_BLK_F_FLUSH);
  cfg->num_queues = 1;
  if (has (features, VIRTIO_BLK_F_MQ) && len >= 36) {
    cfg->num_queues = le16_at (d + 34);
    if (cfg->num_queues == 0)
      return set_error (EPROTO, "virtio-blk config offers 0 queues");
  }
  if (has (features, VIRTIO_BLK_F_DISCARD) && len >= 48) {
    cfg->max_discard_sectors = le32_at (d + 36);
    cfg->max_discard_seg = le32_at (d + 40);
    cfg->discard_sector_alignment = le32_at (d + 44);
  }
  if (has (features, VIRTIO_BLK_F_WRITE_ZEROES) && len >= 57) {
    cfg->max_write_zeroes_sectors = le32_at (d + 48);
    cfg->max_write_zeroes_seg = le32_at (d + 52);
    cfg->write_zeroes_may_unmap = d[56] != 0;
  }
  return 0;
}
