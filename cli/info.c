/* info.c — `vublk info [--json] SOCKET`: what the device is and what was
 * negotiated with it. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void
human_size (uint64_t bytes, char *buf, size_t len)
{
  const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
  double v = bytes;
  unsigned u = 0;

  while (v >= 1024 && u < 5) {
    v /= 1024;
    u++;
  }
  snprintf (buf, len, "%.1f %s", v, units[u]);
}

/* Writes bytes to buf in the largest binary unit that holds it exactly
 * ("64 MiB", "1536 KiB", "4097 B"). */
static void
exact_size (uint64_t bytes, char *buf, size_t len)
{
  const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
  unsigned u = 0;

  while (u < 4 && bytes && bytes % 1024 == 0) {
    bytes /= 1024;
    u++;
  }
  snprintf (buf, len, "%" PRIu64 " %s", bytes, units[u]);
}

/* Writes the names of the set bits of mask, separated by sep. */
static void
print_features (uint64_t mask, const char *(*name) (unsigned),
                const char *sep, bool json)
{
  bool first = true;

  for (unsigned b = 0; b < 64; b++) {
    if (!(mask & (1ull << b)))
      continue;
    const char *n = name (b);
    char unknown[16];
    if (!n) {
      snprintf (unknown, sizeof unknown, "bit%u", b);
      n = unknown;
    }
    printf ("%s%s%s%s", first ? "" : sep, json ? "\"" : "", n,
            json ? "\"" : "");
    first = false;
  }
}

static void
usage (FILE *f)
{
  fprintf (f, "Usage: vublk info [--json] [OPTIONS] SOCKET\n"
           "Shows the size, block sizes, limits, queues, negotiated features"
           " and serial\nof the vhost-user-blk device at SOCKET.\n\n"
           "  --json                   print JSON\n%s", device_options_help ());
}

/* Writes s into out (cap bytes) as the inside of a JSON string: quotes,
 * backslashes, control bytes and bytes above 0x7e escaped (\u00XX, the
 * byte's value: the text may come from the backend and need not be
 * UTF-8).  Cut short, never unterminated, if out is too small. */
static void
json_escape (const char *s, char *out, size_t cap)
{
  size_t n = 0;

  for (; *s && n + 7 < cap; s++) {
    unsigned char c = (unsigned char) *s;

    if (c == '"' || c == '\\')
      n += (size_t) snprintf (out + n, cap - n, "\\%c", c);
    else if (c < 0x20 || c > 0x7e)
      n += (size_t) snprintf (out + n, cap - n, "\\u%04x", c);
    else
      out[n++] = (char) c;
  }
  out[n] = '\0';
}

enum { OPT_JSON = 256 };
static const struct option own[] = {
  { "json", no_argument, NULL, OPT_JSON },
  { NULL, 0, NULL, 0 },
};

/* Takes info's own options (parse_command_line): *opaque is the json
 * flag. */
static void
take_option (void *opaque, int code, const char *value)
{
  (void) value;
  if (code == OPT_JSON)
    *(bool *) opaque = true;
}

int
cmd_info (int argc, char **argv)
{
  struct vublk_options o;
  struct vublk_info i;
  struct vublk *dev;
  const char *socket = NULL;
  bool json = false;
  char serial[21], human[32], shared[32], pool[32], serial_error[200];
  int r;

  device_options_init (&o);
  socket = only_socket (&(struct command_line) {
      .command = "vublk info", .prefix = "info: ", .own = own,
      .usage = usage, .option = take_option, .opaque = &json,
    }, argc, argv, &o);

  dev = open_device (socket, &o);
  vublk_get_info (dev, &i);
  r = vublk_get_serial (dev, serial);
  if (r < 0) {
    snprintf (serial_error, sizeof serial_error, "%s", vublk_get_error ());
    serial[0] = '\0';
  }
  human_size (i.size, human, sizeof human);

  if (json) {
    char socket_json[3 * 4096], serial_json[6 * sizeof serial + 1];

    json_escape (socket, socket_json, sizeof socket_json);
    json_escape (serial, serial_json, sizeof serial_json);
    printf ("{\n  \"socket\": \"%s\",\n  \"size\": %" PRIu64 ",\n"
            "  \"logical_block_size\": %u,\n  \"physical_block_size\": %u,\n"
            "  \"alignment_offset\": %u,\n  \"min_io_size\": %u,\n"
            "  \"opt_io_size\": %u,\n  \"size_max\": %u,\n  \"seg_max\": %u,\n"
            "  \"max_transfer\": %u,\n  \"max_discard_sectors\": %u,\n"
            "  \"max_discard_seg\": %u,\n  \"max_write_zeroes_sectors\": %u,\n"
            "  \"max_write_zeroes_seg\": %u,\n"
            "  \"write_zeroes_may_unmap\": %s,\n  \"readonly\": %s,\n"
            "  \"writeback\": %s,\n  \"can_flush\": %s,\n"
            "  \"can_discard\": %s,\n  \"can_write_zeroes\": %s,\n"
            "  \"queues\": %u,\n  \"backend_queues\": %u,\n"
            "  \"queue_size\": %u,\n  \"queue_depth\": %u,\n"
            "  \"reconnects\": %" PRIu64 ",\n"
            "  \"memory\": \"%s\",\n  \"pool_size\": %" PRIu64 ",\n"
            "  \"ring\": \"%s\",\n"
            "  \"serial\": \"%s\",\n"
            "  \"features\": [",
            socket_json, i.size, i.logical_block_size, i.physical_block_size,
            i.alignment_offset, i.min_io_size, i.opt_io_size, i.size_max,
            i.seg_max, i.max_transfer, i.max_discard_sectors,
            i.max_discard_seg, i.max_write_zeroes_sectors,
            i.max_write_zeroes_seg,
            i.write_zeroes_may_unmap ? "true" : "false",
            i.readonly ? "true" : "false", i.writeback ? "true" : "false",
            i.can_flush ? "true" : "false", i.can_discard ? "true" : "false",
            i.can_write_zeroes ? "true" : "false", i.num_queues,
            i.backend_queues, i.queue_size, i.queue_depth, i.reconnects,
            i.hugetlb ? "hugetlb" : "normal", i.pool_size,
            i.packed_ring ? "packed" : "split", serial_json);
    print_features (i.features, vublk_feature_name, ", ", true);
    printf ("],\n  \"protocol_features\": [");
    print_features (i.protocol_features, vublk_protocol_feature_name, ", ",
                    true);
    printf ("]\n}\n");
  }
  else {
    printf ("socket:               %s\n", socket);
    printf ("size:                 %" PRIu64 " bytes (%s)\n", i.size, human);
    printf ("logical block size:   %u\n", i.logical_block_size);
    printf ("physical block size:  %u\n", i.physical_block_size);
    if (i.min_io_size || i.opt_io_size)
      printf ("min/opt I/O size:     %u / %u\n", i.min_io_size,
              i.opt_io_size);
    else
      printf ("min/opt I/O size:     not reported\n");
    printf ("max segment size:     %s", i.size_max ? "" : "no limit\n");
    if (i.size_max)
      printf ("%u\n", i.size_max);
    if (i.seg_max)
      printf ("max segments:         %u\n", i.seg_max);
    else
      printf ("max segments:         not reported\n");
    printf ("max transfer:         %u bytes per request\n", i.max_transfer);
    printf ("discard:              %s", i.can_discard ? "" : "no\n");
    if (i.can_discard)
      printf ("up to %u sectors, %u segment(s)\n", i.max_discard_sectors,
              i.max_discard_seg);
    printf ("write zeroes:         %s", i.can_write_zeroes ? "" : "no\n");
    if (i.can_write_zeroes)
      printf ("up to %u sectors, %u segment(s)%s\n",
              i.max_write_zeroes_sectors, i.max_write_zeroes_seg,
              i.write_zeroes_may_unmap ? ", may unmap" : "");
    printf ("read-only:            %s\n", i.readonly ? "yes" : "no");
    printf ("write cache:          %s\n", i.writeback ? "writeback"
            : "writethrough");
    printf ("queues:               %u in use, %u offered, %u entries each "
            "(%u requests in flight each)\n", i.num_queues,
            i.backend_queues, i.queue_size, i.queue_depth);
    printf ("ring:                 %s%s%s\n",
            i.packed_ring ? "packed" : "split",
            i.event_idx ? ", event index" : "",
            i.indirect_desc ? ", indirect descriptors" : "");
    exact_size (i.shared_memory_size, shared, sizeof shared);
    exact_size (i.pool_size, pool, sizeof pool);
    printf ("memory:               %s, %s shared, of which %s I/O buffer "
            "pool\n", i.hugetlb ? "hugetlb (2 MiB pages)"
                                 : "normal (4 KiB pages)", shared, pool);
    if (r < 0)
      printf ("serial:               not reported (%s)\n", serial_error);
    else
      printf ("serial:               %s\n", *serial ? serial : "(empty)");
    printf ("features:             ");
    print_features (i.features, vublk_feature_name, " ", false);
    printf ("\nprotocol features:    ");
    print_features (i.protocol_features, vublk_protocol_feature_name, " ",
                    false);
    printf ("\n");
  }
  vublk_close (dev);
  return 0;
}
