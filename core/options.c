/* options.c — struct vublk_options: its defaults, and one table of the
 * options a user can set by name (the long options of vublk and
 * vublk-fuse without their dashes, and the nbdkit plugin's keys), with
 * each one's bounds and help.  vublk_options_set() parses a value against
 * the table; options_check() checks a filled struct against the same
 * bounds, so a value is refused with one message wherever it comes from.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "number.h"

enum option_type {
  TYPE_COUNT,     /* unsigned, decimal */
  TYPE_SIZE,      /* size_t, with k/M/G/T suffixes (powers of 1024) */
  TYPE_SECONDS,   /* double */
  TYPE_BOOL,      /* bool: on/off, yes/no, true/false, 1/0 */
  TYPE_RING,      /* enum vublk_ring */
  TYPE_MEMORY,    /* enum vublk_memory */
};

struct option_desc {
  struct vublk_option_info info;
  enum option_type type;
  size_t offset;            /* of the field in struct vublk_options */
  double min, max;          /* bounds (counts, sizes, seconds) */
  bool power_of_two;
};

#define FIELD(f) offsetof (struct vublk_options, f)

static const struct option_desc options[] = {
  { { "queues", "N", "virtqueues to use (default: the backend's, at most 4)",
      "num-queues" },
    TYPE_COUNT, FIELD (num_queues), 1, MAX_QUEUES, false },
  { { "queue-size", "N", "entries per virtqueue, a power of two "
      "(default 256)", NULL },
    TYPE_COUNT, FIELD (queue_size), 8, MAX_QUEUE_SIZE, true },
  { { "poll", "on|off", "poll for completions instead of sleeping", NULL },
    TYPE_BOOL, FIELD (poll), 0, 0, false },
  { { "ring", "auto|split|packed", "virtqueue layout (default auto: split, "
      "which every backend serves; packed needs VIRTIO_F_RING_PACKED)", NULL },
    TYPE_RING, FIELD (ring), 0, 0, false },
  { { "memory", "normal|hugetlb", "back the memory shared with the backend by "
      "ordinary or 2 MiB huge pages (SPDK needs huge pages; default normal)",
      NULL },
    TYPE_MEMORY, FIELD (memory), 0, 0, false },
  { { "pool-size", "BYTES", "shared I/O buffer pool (default 64M)", NULL },
    TYPE_SIZE, FIELD (pool_size), 1 << 20, 68719476736.0, false },
  { { "connect-timeout", "S", "wait at most S seconds for the connection and "
      "for each handshake reply (default 5)", NULL },
    TYPE_SECONDS, FIELD (connect_timeout), 0.001, 3600, false },
  { { "reconnect-timeout", "S", "keep reconnecting S seconds after the "
      "backend goes away before failing I/O (default 30)", NULL },
    TYPE_SECONDS, FIELD (reconnect_timeout), 0, 86400, false },
  { { "request-timeout", "S", "treat a request unanswered for S seconds as a "
      "hung backend (default 30, 0 = never)", NULL },
    TYPE_SECONDS, FIELD (request_timeout), 0, 86400, false },
  { { "spin", "USEC", "synchronous calls poll this long for their completion "
      "at low queue depth (default 0)", NULL },
    TYPE_COUNT, FIELD (spin_us), 0, MAX_SPIN_US, false },
  { { "readonly", "on|off", "refuse writes even if the device allows them",
      NULL },
    TYPE_BOOL, FIELD (readonly), 0, 0, false },
  { { "thread-queues", "on|off", "each thread's synchronous calls drive a "
      "queue of their own when one is free (default off)", NULL },
    TYPE_BOOL, FIELD (thread_queues), 0, 0, false },
};

const struct vublk_option_info *
vublk_option_info (unsigned i)
{
  return i < ARRAY_SIZE (options) ? &options[i].info : NULL;
}

void
vublk_options_init_size (struct vublk_options *opts, size_t size)
{
  struct vublk_options d;

  memset (&d, 0, sizeof d);
  d.struct_size = size < sizeof d ? size : sizeof d;
  d.queue_size = DEFAULT_QUEUE_SIZE;
  d.pool_size = DEFAULT_POOL_SIZE;
  d.connect_timeout = 5;
  d.request_timeout = 30;
  d.reconnect_timeout = 30;
  d.log_level = VUBLK_LOG_INFO;
  memcpy (opts, &d, d.struct_size);
}

int
options_import (struct vublk_options *out, const struct vublk_options *in)
{
  vublk_options_init_size (out, sizeof *out);
  if (!in)
    return 0;
  if (in->struct_size < offsetof (struct vublk_options, num_queues)
      || in->struct_size > (1u << 16))
    return set_error (EINVAL, "options not prepared with vublk_options_init "
                      "(struct_size %zu)", in->struct_size);
  /* A program built against an older vublk.h passes a shorter struct:
   * the fields it does not know keep their defaults. */
  memcpy (out, in, in->struct_size < sizeof *out
                   ? in->struct_size : sizeof *out);
  out->struct_size = sizeof *out;
  return 0;
}

static const struct option_desc *
find_option (const char *name)
{
  for (size_t i = 0; i < ARRAY_SIZE (options); i++)
    if (!strcmp (options[i].info.name, name)
        || (options[i].info.alias && !strcmp (options[i].info.alias, name)))
      return &options[i];
  return NULL;
}

/* Looks value up in a NULL-ended list of choices; -1 if absent. */
static int
choice (const char *value, const char *const *choices)
{
  for (int i = 0; choices[i]; i++)
    if (!strcmp (value, choices[i]))
      return i;
  return -1;
}

int
vublk_options_set (struct vublk_options *opts, const char *name,
                   const char *value)
{
  static const char *const bools[] = { "off", "on", "no", "yes", "false",
                                       "true", "0", "1", NULL };
  static const char *const rings[] = { "auto", "split", "packed", NULL };
  static const char *const memories[] = { "normal", "hugetlb", NULL };
  const struct option_desc *o = name ? find_option (name) : NULL;
  char *field;
  long double v;
  int c;

  if (!o)
    return set_error (EINVAL, "unknown option '%s'", name ? name : "");
  if (!value)
    value = "";
  if (!opts || opts->struct_size < o->offset + 1)
    return set_error (EINVAL, "%s: options not prepared with "
                      "vublk_options_init", name);
  field = (char *) opts + o->offset;
  switch (o->type) {
  case TYPE_BOOL:
    if ((c = choice (value, bools)) < 0)
      return set_error (EINVAL, "%s: '%s' is not on or off (nor yes/no, "
                        "true/false, 1/0)",
                        name, value);
    *(bool *) field = c & 1;
    return 0;
  case TYPE_RING:
    if ((c = choice (value, rings)) < 0)
      return set_error (EINVAL, "%s: '%s' is not auto, split or packed",
                        name, value);
    *(enum vublk_ring *) field = (enum vublk_ring) c;
    return 0;
  case TYPE_MEMORY:
    if ((c = choice (value, memories)) < 0)
      return set_error (EINVAL, "%s: '%s' is neither normal nor hugetlb",
                        name, value);
    *(enum vublk_memory *) field = (enum vublk_memory) c;
    return 0;
  case TYPE_COUNT:
  case TYPE_SIZE:
  case TYPE_SECONDS:
    break;
  }
  if (!number_parse (value, o->type == TYPE_SIZE, &v)
      || (o->type != TYPE_SECONDS
          && (v >= 18446744073709551616.0L || v != (uint64_t) v)))
    return set_error (EINVAL, "%s: '%s' is not %s", name, value,
                      o->type == TYPE_SECONDS ? "a number of seconds"
                      : o->type == TYPE_SIZE ? "a size" : "a whole number");
  if (v < o->min || v > o->max)
    return set_error (EINVAL, "%s: '%s' is outside %.15g..%.15g", name,
                      value, o->min, o->max);
  if (o->power_of_two && ((uint64_t) v & ((uint64_t) v - 1)))
    return set_error (EINVAL, "%s: '%s' is not a power of two", name,
                      value);
  switch (o->type) {
  case TYPE_COUNT: *(unsigned *) field = (unsigned) v; break;
  case TYPE_SIZE: *(size_t *) field = (size_t) v; break;
  default: *(double *) field = (double) v; break;
  }
  return 0;
}

/* Checks the number in field f of o against its table entry. */
static int
check_number (const struct vublk_options *o, const struct option_desc *d)
{
  const char *field = (const char *) o + d->offset;
  double v;

  switch (d->type) {
  case TYPE_COUNT: v = *(const unsigned *) field; break;
  case TYPE_SIZE: v = (double) *(const size_t *) field; break;
  case TYPE_SECONDS: v = *(const double *) field; break;
  default: return 0;
  }
  /* queues 0 means "the backend's", the one count below its minimum. */
  if (d->offset == FIELD (num_queues) && v == 0)
    return 0;
  if (!(v >= d->min && v <= d->max))
    return set_error (EINVAL, "%s: %.15g is outside %.15g..%.15g", d->info.name, v,
                      d->min, d->max);
  if (d->power_of_two && ((uint64_t) v & ((uint64_t) v - 1)))
    return set_error (EINVAL, "%s: %.15g is not a power of two", d->info.name,
                      v);
  return 0;
}

int
options_check (const struct vublk_options *o)
{
  for (size_t i = 0; i < ARRAY_SIZE (options); i++) {
    int err = check_number (o, &options[i]);
    if (err)
      return err;
  }
  if (o->ring != VUBLK_RING_AUTO && o->ring != VUBLK_RING_SPLIT
      && o->ring != VUBLK_RING_PACKED)
    return set_error (EINVAL, "ring: layout %d is not auto, split or packed",
                      (int) o->ring);
  if (o->memory != VUBLK_MEMORY_NORMAL && o->memory != VUBLK_MEMORY_HUGETLB)
    return set_error (EINVAL, "memory: kind %d is neither normal nor hugetlb",
                      (int) o->memory);
  return 0;
}
