/* number.c — reading a number a user typed (see number.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "number.h"

bool
number_parse (const char *text, bool size_suffix, long double *out)
{
  static const char units[] = "kmgt";
  size_t digits = strspn (text, "0123456789.");
  const char *unit;
  char *end;
  long double v;

  /* strtold alone would also skip blanks and take a sign, an exponent,
   * hex, "inf" and "nan": only digits and a point may reach it. */
  if (digits == 0)
    return false;
  errno = 0;
  v = strtold (text, &end);
  /* A second point, or a point alone, stops strtold early. */
  if (errno || end != text + digits)
    return false;
  if (size_suffix && *end && (unit = strchr (units, *end | 0x20))) {
    for (long i = unit - units; i >= 0; i--)
      v *= 1024;
    end++;
    if (*end == 'i')
      end++;
    if (*end == 'B')
      end++;
  }
  if (*end)
    return false;
  *out = v;
  return true;
}
