/* info.c — what a device is and what was negotiated (vublk_get_info),
 * its size, and the names of feature bits for people. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

const char *
vublk_get_socket_path (struct vublk *dev)
{
  return dev->socket_path;
}

uint64_t
vublk_get_size (struct vublk *dev)
{
  return atomic_load (&dev->size);
}

int
vublk_get_info_size (struct vublk *dev, struct vublk_info *out, size_t size)
{
  struct vublk_info all, *info = &all;
  const struct blk_config *c = &dev->cfg;

  memset (info, 0, sizeof *info);
  pthread_mutex_lock (&dev->info_lock);
  info->size = vublk_get_size (dev);
  info->logical_block_size = c->blk_size;
  info->physical_block_size = c->physical_block_size;
  info->alignment_offset = c->alignment_offset;
  info->min_io_size = c->min_io_size;
  info->opt_io_size = c->opt_io_size;
  info->size_max = c->size_max;
  info->seg_max = c->seg_max;
  info->max_transfer = dev->limits.max_transfer;
  info->max_discard_sectors = c->max_discard_sectors;
  info->max_discard_seg = c->max_discard_seg;
  info->discard_sector_alignment = c->discard_sector_alignment;
  info->max_write_zeroes_sectors = c->max_write_zeroes_sectors;
  info->max_write_zeroes_seg = c->max_write_zeroes_seg;
  info->write_zeroes_may_unmap = c->write_zeroes_may_unmap;
  info->readonly = device_readonly (dev);
  info->can_flush = device_has (dev, VIRTIO_BLK_F_FLUSH);
  info->can_discard = !info->readonly
                      && device_has (dev, VIRTIO_BLK_F_DISCARD);
  info->can_write_zeroes = !info->readonly
                           && device_has (dev, VIRTIO_BLK_F_WRITE_ZEROES);
  info->writeback = c->writeback;
  info->num_queues = dev->nqueues;
  info->backend_queues = dev->backend_queues;
  info->queue_size = dev->queue_size;
  info->queue_depth = dev->nqueues ? dev->queues[0].nslots : 0;
  info->event_idx = device_has (dev, VIRTIO_RING_F_EVENT_IDX);
  info->indirect_desc = device_has (dev, VIRTIO_RING_F_INDIRECT_DESC);
  info->features = dev->features;
  info->backend_features = dev->backend_features;
  info->protocol_features = dev->protocol_features;
  info->backend_protocol_features = dev->backend_protocol_features;
  pthread_mutex_unlock (&dev->info_lock);
  info->reconnects = atomic_load (&dev->reconnects);
  info->hugetlb = dev->mem.hugetlb;
  info->packed_ring = device_has (dev, VIRTIO_F_RING_PACKED);
  info->shared_memory_size = dev->mem.size;
  info->pool_size = dev->opts.pool_size;
  /* A program built against an older vublk.h gets the fields it knows. */
  memcpy (out, info, size < sizeof *info ? size : sizeof *info);
  return 0;
}

const char *
vublk_feature_name (unsigned bit)
{
  static const char *const names[64] = {
    [VIRTIO_BLK_F_SIZE_MAX] = "SIZE_MAX", [VIRTIO_BLK_F_SEG_MAX] = "SEG_MAX",
    [VIRTIO_BLK_F_GEOMETRY] = "GEOMETRY", [VIRTIO_BLK_F_RO] = "RO",
    [VIRTIO_BLK_F_BLK_SIZE] = "BLK_SIZE", [VIRTIO_BLK_F_FLUSH] = "FLUSH",
    [VIRTIO_BLK_F_TOPOLOGY] = "TOPOLOGY",
    [VIRTIO_BLK_F_CONFIG_WCE] = "CONFIG_WCE", [VIRTIO_BLK_F_MQ] = "MQ",
    [VIRTIO_BLK_F_DISCARD] = "DISCARD",
    [VIRTIO_BLK_F_WRITE_ZEROES] = "WRITE_ZEROES",
    [VIRTIO_F_NOTIFY_ON_EMPTY] = "NOTIFY_ON_EMPTY",
    [VIRTIO_RING_F_INDIRECT_DESC] = "INDIRECT_DESC",
    [VIRTIO_RING_F_EVENT_IDX] = "EVENT_IDX",
    [VHOST_USER_F_PROTOCOL_FEATURES] = "PROTOCOL_FEATURES",
    [VIRTIO_F_VERSION_1] = "VERSION_1", [33] = "ACCESS_PLATFORM",
    [34] = "RING_PACKED", [35] = "IN_ORDER",
  };
  return bit < 64 ? names[bit] : NULL;
}

const char *
vublk_protocol_feature_name (unsigned bit)
{
  static const char *const names[64] = {
    [0] = "MQ", [1] = "LOG_SHMFD", [2] = "RARP", [3] = "REPLY_ACK",
    [4] = "NET_MTU", [5] = "BACKEND_REQ", [6] = "CROSS_ENDIAN",
    [7] = "CRYPTO_SESSION", [8] = "PAGEFAULT", [9] = "CONFIG",
    [10] = "BACKEND_SEND_FD", [11] = "HOST_NOTIFIER",
    [12] = "INFLIGHT_SHMFD", [13] = "RESET_DEVICE",
    [14] = "INBAND_NOTIFICATIONS", [15] = "CONFIGURE_MEM_SLOTS",
    [16] = "STATUS",
  };
  return bit < 64 ? names[bit] : NULL;
}

void
feature_list (uint64_t bits, bool protocol, char *buf, size_t len)
{
  size_t used = 0;

  if (len)
    buf[0] = '\0';
  for (unsigned bit = 0; bit < 64 && used < len; bit++) {
    const char *name;
    int n;

    if (!(bits & (1ull << bit)))
      continue;
    name = protocol ? vublk_protocol_feature_name (bit)
                    : vublk_feature_name (bit);
    n = name ? snprintf (buf + used, len - used, "%s%s", used ? ", " : "",
                         name)
             : snprintf (buf + used, len - used, "%sbit %u",
                         used ? ", " : "", bit);
    if (n < 0)
      break;
    used += (size_t) n;
  }
}
