/* log.c — where a frontend's messages go once it runs: standard error,
 * or syslog (facility daemon, tagged with the program's name and pid)
 * after a background process has let go of standard error, as nbdkit
 * does when it forks.  Without this, a daemon's warnings (a backend lost
 * for good, a flush that failed at unmount) would go to /dev/null. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <syslog.h>

#include "frontend.h"

static atomic_bool to_syslog;

void
log_to_syslog (void)
{
  openlog (program_name, LOG_PID, LOG_DAEMON);
  atomic_store (&to_syslog, true);
}

/* The syslog priority of a library log level. */
static int
syslog_priority (int level)
{
  switch (level) {
  case VUBLK_LOG_ERROR: return LOG_ERR;
  case VUBLK_LOG_WARNING: return LOG_WARNING;
  case VUBLK_LOG_INFO: return LOG_INFO;
  default: return LOG_DEBUG;
  }
}

void
log_message (int level, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  if (atomic_load (&to_syslog))
    vsyslog (syslog_priority (level), fmt, ap);
  else {
    char line[2048];

    vsnprintf (line, sizeof line, fmt, ap);
    fprintf (stderr, "%s: %s\n", program_name, line);
  }
  va_end (ap);
}

void
log_formatted (int priority, const char *fmt, va_list ap)
{
  if (atomic_load (&to_syslog))
    vsyslog (priority, fmt, ap);
  else
    vfprintf (stderr, fmt, ap);
}
