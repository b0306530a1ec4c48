/* options.c — struct vublk_options: the defaults and the bounds every
 * field must keep.  Programs and the plugin check what users type against
 * the same bounds through the library, so a value is refused with one
 * message wherever it comes from. */
#include <errno.h>
#include <string.h>

#include "internal.h"

void
vublk_options_init (struct vublk_options *opts)
{
  memset (opts, 0, sizeof *opts);
  opts->queue_size = DEFAULT_QUEUE_SIZE;
  opts->pool_size = DEFAULT_POOL_SIZE;
  opts->connect_timeout = 5;
  opts->request_timeout = 30;
  opts->reconnect_timeout = 30;
  opts->log_level = VUBLK_LOG_INFO;
}

int
options_check (const struct vublk_options *o)
{
  if (o->queue_size < 8 || o->queue_size > MAX_QUEUE_SIZE
      || (o->queue_size & (o->queue_size - 1)))
    return set_error (EINVAL, "queue size %u is not a power of two between "
                      "8 and %u", o->queue_size, MAX_QUEUE_SIZE);
  if (o->num_queues > MAX_QUEUES)
    return set_error (EINVAL, "%u queues requested, at most %u",
                      o->num_queues, MAX_QUEUES);
  if (o->pool_size < (1u << 20) || o->pool_size > (1ull << 36))
    return set_error (EINVAL, "pool size %zu is outside 1 MiB .. 64 GiB",
                      o->pool_size);
  if (!(o->connect_timeout >= 0 && o->connect_timeout <= 3600)
      || !(o->request_timeout >= 0 && o->request_timeout <= 86400)
      || !(o->reconnect_timeout >= 0 && o->reconnect_timeout <= 86400))
    return set_error (EINVAL, "timeouts must be between 0 and 86400 seconds");
  if (o->ring != VUBLK_RING_AUTO && o->ring != VUBLK_RING_SPLIT
      && o->ring != VUBLK_RING_PACKED)
    return set_error (EINVAL, "ring layout %d is not auto, split or packed",
                      (int) o->ring);
  if (o->memory != VUBLK_MEMORY_NORMAL && o->memory != VUBLK_MEMORY_HUGETLB)
    return set_error (EINVAL, "memory kind %d is neither normal nor hugetlb",
                      (int) o->memory);
  if (o->spin_us > MAX_SPIN_US)
    return set_error (EINVAL, "spin time %u us is above %u", o->spin_us,
                      MAX_SPIN_US);
  return 0;
}
