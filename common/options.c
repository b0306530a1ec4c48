/* options.c — strict parsing of the numbers users type, and the device
 * options every program shares (made from the library's table). */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend.h"
#include "number.h"

const char *program_name = "vublk";

/* Whether the library option called name takes no value on the command
 * line (a boolean: present means on). */
static bool
is_flag (const struct vublk_option_info *info)
{
  return !strcmp (info->value_hint, "on|off");
}

/* Library options the programs leave out: vublk-fuse has a --spin and
 * a -r/--readonly of its own, the tools need neither. */
static bool
left_out (const struct vublk_option_info *info)
{
  return !strcmp (info->name, "spin") || !strcmp (info->name, "readonly");
}


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

/* Reads value as a whole number (with a k/M/G/T suffix when suffixes)
 * within min..max; exits with a usage error naming option otherwise. */
static uint64_t
parse_whole (const char *option, const char *value, uint64_t min,
             uint64_t max, bool suffixes)
{
  long double v;

  if (!value || !(isdigit ((unsigned char) *value) || *value == '.'))
    die (EXIT_USAGE, "%s: '%s' is not a %snumber", option,
         value ? value : "", value && strchr (value, '-') ? "positive " : "");
  if (!number_parse (value, suffixes, &v))
    die (EXIT_USAGE, "%s: '%s' has trailing garbage%s", option, value,
         suffixes ? "" : " (a plain count: no suffix)");
  if (v >= 18446744073709551616.0L)
    die (EXIT_USAGE, "%s: '%s' is too large", option, value);
  if (v != (uint64_t) v)
    die (EXIT_USAGE, "%s: '%s' is not a whole number", option, value);
  if (v < min || v > max)
    die (EXIT_USAGE, "%s: %s is outside %llu..%llu", option, value,
         (unsigned long long) min, (unsigned long long) max);
  return (uint64_t) v;
}

uint64_t
parse_size (const char *option, const char *value, uint64_t min, uint64_t max)
{
  return parse_whole (option, value, min, max, true);
}

uint64_t
parse_count (const char *option, const char *value, uint64_t min,
             uint64_t max)
{
  return parse_whole (option, value, min, max, false);
}

double
parse_seconds (const char *option, const char *value)
{
  long double v;

  if (!value || !number_parse (value, false, &v) || v > 86400)
    die (EXIT_USAGE, "%s: '%s' is not a number of seconds (0..86400)",
         option, value ? value : "");
  return (double) v;
}

/* The log callback: one line per event (log_message). */
static void
log_device_event (void *opaque, int level, const char *msg)
{
  (void) opaque;
  log_message (level, "%s: %s", vublk_log_level_name (level), msg);
}

void
device_options_init (struct vublk_options *o)
{
  vublk_options_init (o);
  o->log = log_device_event;
  o->log_level = VUBLK_LOG_WARNING;
}

void
device_options_verbose (struct vublk_options *o)
{
  o->log = log_device_event;
  o->log_level = VUBLK_LOG_DEBUG;
}

size_t
device_long_options (struct option *out, size_t max, int with_value,
                     int flag)
{
  const struct vublk_option_info *info;
  size_t n = 0;

  for (unsigned i = 0; (info = vublk_option_info (i)) && n < max; i++)
    if (!left_out (info))
      out[n++] = (struct option) {
        info->name, is_flag (info) ? no_argument : required_argument, NULL,
        is_flag (info) ? flag : with_value,
      };
  return n;
}

/* Appends to buf (at *len, capacity cap) the help text of one option:
 * "  --name HINT", padded, and its help wrapped under it. */
static void
append_option_help (char *buf, size_t *len, size_t cap, const char *names,
                    const char *help)
{
  const size_t column = 27, width = 78;
  size_t at = 0;
  int n;

  n = snprintf (buf + *len, cap - *len, "  %-*s", (int) (column - 2), names);
  *len += n > 0 ? (size_t) n : 0;
  /* A name too long for its column puts the help on the next line. */
  at = 2 + strlen (names) >= column ? width : column;
  while (*help && *len < cap - 1) {
    size_t word = strcspn (help, " ");

    if (at + word + 1 > width) {
      *len += snprintf (buf + *len, cap - *len, "\n%*s", (int) column, "");
      at = column;
    }
    else if (at > column) {
      buf[(*len)++] = ' ';
      at++;
    }
    *len += snprintf (buf + *len, cap - *len, "%.*s", (int) word, help);
    at += word;
    help += word;
    help += strspn (help, " ");
  }
  *len += snprintf (buf + *len, cap - *len, "\n");
}

const char *
device_options_help (void)
{
  static char buf[4096];
  const struct vublk_option_info *info;
  size_t len = 0;

  if (buf[0])
    return buf;
  for (unsigned i = 0; (info = vublk_option_info (i)); i++) {
    char names[64];

    if (left_out (info))
      continue;
    if (is_flag (info))
      snprintf (names, sizeof names, "--%s", info->name);
    else
      snprintf (names, sizeof names, "--%s %s", info->name, info->value_hint);
    append_option_help (buf, &len, sizeof buf, names, info->help);
  }
  append_option_help (buf, &len, sizeof buf, "-v, --verbose",
                      "one line per protocol event on stderr (reconnects "
                      "and why, tolerated backend habits)");
  return buf;
}

const char *
socket_operand (const char *operand)
{
  size_t n = strlen (DEVICE_PREFIX);

  if (!strncmp (operand, DEVICE_PREFIX, n) && access (operand, F_OK) == -1)
    return operand + n;
  return operand;
}

struct vublk *
open_device (const char *socket, const struct vublk_options *o)
{
  struct vublk *dev = vublk_open (socket, o);

  if (!dev)
    die (1, "%s", vublk_get_error ());
  return dev;
}
