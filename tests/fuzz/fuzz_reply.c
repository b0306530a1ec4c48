/* fuzz_reply — libFuzzer target for the vhost-user reply parser and the
 * virtio-blk config parser: whatever bytes the backend sends in answer to
 * a request must give a clean error or a checked value.
 *
 * Input: byte 0 picks the request and expected size, byte 1 the features
 * the config is parsed under; the rest is what arrives on the socket
 * (then EOF). */
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const uint32_t requests[] = {
    VHOST_USER_GET_FEATURES, VHOST_USER_GET_PROTOCOL_FEATURES,
    VHOST_USER_GET_QUEUE_NUM, VHOST_USER_GET_CONFIG,
    VHOST_USER_GET_VRING_BASE, VHOST_USER_GET_MAX_MEM_SLOTS,
  };
  uint8_t payload[sizeof (struct vhost_user_config)];
  uint32_t request, expected, got = 0;
  uint64_t features;
  struct blk_config cfg;
  int sv[2];

  if (size < 2 || size > 65536)
    return 0;
  request = requests[data[0] % (sizeof requests / sizeof requests[0])];
  expected = request == VHOST_USER_GET_CONFIG ? 0
             : request == VHOST_USER_GET_VRING_BASE ? 8 : 8;
  features = (uint64_t) data[1] << 1 | (uint64_t) (data[1] & 0x80) << 6
             | 1ull << VIRTIO_F_VERSION_1;
  if (socketpair (AF_UNIX, SOCK_STREAM, 0, sv))
    return 0;
  if (write (sv[1], data + 2, size - 2) != (ssize_t) (size - 2)) {
    close (sv[0]);
    close (sv[1]);
    return 0;
  }
  close (sv[1]);
  if (vu_recv_reply (sv[0], request, payload, expected, sizeof payload, &got,
                     0) == 0
      && request == VHOST_USER_GET_CONFIG && got >= 12) {
    struct vhost_user_config *c = (void *) payload;
    uint32_t len = got - 12;

    if (c->size < len)
      len = c->size;
    blk_config_parse (&cfg, c->data, len, features);
  }
  close (sv[0]);
  return 0;
}
