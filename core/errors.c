/* errors.c — the thread-local last error (message + errno) that every
 * failing libvublk call records, libnbd style. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static __thread char last_error[512];
static __thread int last_errno;

/* Records errnum and a printf-style message as this thread's last error.
 * Returns -errnum so I/O paths can `return set_error (...)`. */
int
set_error (int errnum, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (last_error, sizeof last_error, fmt, ap);
  va_end (ap);
  last_errno = errnum;
  return -errnum;
}

/* Like set_error, appending ": strerror(errnum)". */
int
set_error_errno (int errnum, const char *fmt, ...)
{
  va_list ap;
  size_t n;

  va_start (ap, fmt);
  vsnprintf (last_error, sizeof last_error, fmt, ap);
  va_end (ap);
  n = strlen (last_error);
  snprintf (last_error + n, sizeof last_error - n, ": %s", strerror (errnum));
  last_errno = errnum;
  return -errnum;
}

const char *
vublk_get_error (void)
{
  return last_error;
}

int
vublk_get_errno (void)
{
  return last_errno;
}

const char *
vublk_version (void)
{
  return VUBLK_VERSION_STRING;
}
