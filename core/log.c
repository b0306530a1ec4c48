/* log.c — what the library notices on its own threads (reconnects and
 * why, tolerated backend quirks, requests it gave up on) reaches the
 * caller through the log callback in struct vublk_options, libnbd's debug
 * callback style.  Errors of API calls still go through vublk_get_error();
 * this is for events no call returns. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

void
device_log (struct vublk *dev, int level, const char *fmt, ...)
{
  char msg[512];
  int n;
  va_list ap;

  if (!dev->opts.log || level > dev->opts.log_level)
    return;
  n = snprintf (msg, sizeof msg, "%s: ", dev->socket_path);
  if (n < 0 || (size_t) n >= sizeof msg)
    n = 0;
  va_start (ap, fmt);
  vsnprintf (msg + n, sizeof msg - n, fmt, ap);
  va_end (ap);
  dev->opts.log (dev->opts.log_opaque, level, msg);
}

bool
device_first_time (struct vublk *dev, enum device_once what)
{
  unsigned bit = 1u << what;

  return !(atomic_fetch_or (&dev->once, bit) & bit);
}

const char *
vublk_log_level_name (int level)
{
  switch (level) {
  case VUBLK_LOG_ERROR: return "error";
  case VUBLK_LOG_WARNING: return "warning";
  case VUBLK_LOG_INFO: return "info";
  case VUBLK_LOG_DEBUG: return "debug";
  }
  return "log";
}
