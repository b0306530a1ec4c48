/* syslog_capture.c — an LD_PRELOAD stand-in for syslog(3) in tests: each
 * message is appended as "PRIORITY MESSAGE" to the file VUBLK_TEST_SYSLOG
 * names.  The tests check what a background process logs with no syslog
 * daemon needed and none disturbed. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <syslog.h>

void
openlog (const char *ident, int option, int facility)
{
  (void) ident;
  (void) option;
  (void) facility;
}

void
closelog (void)
{
}

void
vsyslog (int priority, const char *fmt, va_list ap)
{
  const char *path = getenv ("VUBLK_TEST_SYSLOG");
  FILE *f;

  if (!path || !(f = fopen (path, "a")))
    return;
  fprintf (f, "%d ", priority & LOG_PRIMASK);
  vfprintf (f, fmt, ap);
  fputc ('\n', f);
  fclose (f);
}

void
syslog (int priority, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vsyslog (priority, fmt, ap);
  va_end (ap);
}

/* What _FORTIFY_SOURCE turns the calls into. */
void
__vsyslog_chk (int priority, int flag, const char *fmt, va_list ap)
{
  (void) flag;
  vsyslog (priority, fmt, ap);
}

void
__syslog_chk (int priority, int flag, const char *fmt, ...)
{
  va_list ap;

  (void) flag;
  va_start (ap, fmt);
  vsyslog (priority, fmt, ap);
  va_end (ap);
}
