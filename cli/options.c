/* options.c — strict parsing of the numbers users type, and the device
 * options every subcommand shares. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

const char device_options_help[] =
  "  --queues N               virtqueues to use (default: backend's, max 4)\n"
  "  --poll                   poll for completions instead of sleeping\n"
  "  -v, --verbose            one line per protocol event on stderr\n"
  "                           (reconnects and why, tolerated backend quirks)\n"
  "  --connect-timeout S      wait at most S seconds for the connection and\n"
  "                           for each handshake reply (default 5)\n"
  "  --ring split|packed      virtqueue layout (default split; packed\n"
  "                           needs VIRTIO_F_RING_PACKED)\n"
  "  --memory normal|hugetlb  back the memory shared with the backend by\n"
  "                           ordinary or 2 MiB huge pages (SPDK needs\n"
  "                           huge pages; default normal)\n"
  "  --reconnect-timeout S    keep reconnecting S seconds after the backend\n"
  "                           goes away before failing I/O (default 30)\n"
  "  --request-timeout S      treat a request unanswered for S seconds as a\n"
  "                           hung backend (default 30, 0 = never)\n";

const char *program_name = "vublk";

void
die (int code, const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "%s: ", program_name);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  exit (code);
}

uint64_t
parse_size (const char *option, const char *value, uint64_t min, uint64_t max)
{
  char *end;
  unsigned long long v;
  unsigned shift = 0;

  errno = 0;
  if (!value || !*value || *value == '-' || *value == '+')
    die (EXIT_USAGE, "%s: '%s' is not a positive number", option,
         value ? value : "");
  v = strtoull (value, &end, 10);
  if (end == value || errno)
    die (EXIT_USAGE, "%s: '%s' is not a number", option, value);
  switch (*end) {
  case 'k': case 'K': shift = 10; end++; break;
  case 'm': case 'M': shift = 20; end++; break;
  case 'g': case 'G': shift = 30; end++; break;
  case 't': case 'T': shift = 40; end++; break;
  }
  if (*end == 'i' && shift)
    end++;
  if (*end == 'B' && shift)
    end++;
  if (*end)
    die (EXIT_USAGE, "%s: '%s' has trailing garbage", option, value);
  if (shift && v > (UINT64_MAX >> shift))
    die (EXIT_USAGE, "%s: '%s' is too large", option, value);
  v <<= shift;
  if (v < min || v > max)
    die (EXIT_USAGE, "%s: %s is outside %llu..%llu", option, value,
         (unsigned long long) min, (unsigned long long) max);
  return v;
}

double
parse_seconds (const char *option, const char *value)
{
  char *end;
  double v;

  errno = 0;
  v = strtod (value ? value : "", &end);
  if (!value || end == value || *end || errno || !(v >= 0 && v <= 86400))
    die (EXIT_USAGE, "%s: '%s' is not a number of seconds (0..86400)",
         option, value ? value : "");
  return v;
}

/* The log callback behind -v: one line per event, on stderr. */
static void
log_to_stderr (void *opaque, int level, const char *msg)
{
  (void) opaque;
  fprintf (stderr, "%s: %s: %s\n", program_name, vublk_log_level_name (level),
           msg);
}

void
device_options_init (struct vublk_options *o)
{
  vublk_options_init (o);
  o->log = log_to_stderr;
  o->log_level = VUBLK_LOG_WARNING;
}

bool
parse_device_flag (struct vublk_options *o, const char *arg)
{
  if (!strcmp (arg, "--poll"))
    o->poll = true;
  else if (!strcmp (arg, "-v") || !strcmp (arg, "--verbose")) {
    o->log = log_to_stderr;
    o->log_level = VUBLK_LOG_DEBUG;
  }
  else
    return false;
  return true;
}

bool
parse_device_option (struct vublk_options *o, const char *name,
                     const char *value)
{
  if (!strcmp (name, "--queues"))
    o->num_queues = parse_size (name, value, 1, 64);
  else if (!strcmp (name, "--connect-timeout")) {
    o->connect_timeout = parse_seconds (name, value);
    if (o->connect_timeout > 3600 || o->connect_timeout < 0.001)
      die (EXIT_USAGE, "%s: '%s' is not between 0.001 and 3600 seconds",
           name, value);
  }
  else if (!strcmp (name, "--ring")) {
    if (!strcmp (value, "split"))
      o->ring = VUBLK_RING_SPLIT;
    else if (!strcmp (value, "packed"))
      o->ring = VUBLK_RING_PACKED;
    else if (!strcmp (value, "auto"))
      o->ring = VUBLK_RING_AUTO;
    else
      die (EXIT_USAGE, "%s: '%s' is neither split nor packed", name, value);
  }
  else if (!strcmp (name, "--memory")) {
    if (!strcmp (value, "normal"))
      o->memory = VUBLK_MEMORY_NORMAL;
    else if (!strcmp (value, "hugetlb"))
      o->memory = VUBLK_MEMORY_HUGETLB;
    else
      die (EXIT_USAGE, "%s: '%s' is neither normal nor hugetlb", name, value);
  }
  else if (!strcmp (name, "--reconnect-timeout"))
    o->reconnect_timeout = parse_seconds (name, value);
  else if (!strcmp (name, "--request-timeout"))
    o->request_timeout = parse_seconds (name, value);
  else
    return false;
  return true;
}

struct vublk *
open_device (const char *socket, const struct vublk_options *o)
{
  struct vublk *dev = vublk_open (socket, o);

  if (!dev)
    die (1, "%s", vublk_get_error ());
  return dev;
}
