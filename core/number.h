/* number.h — how a number a user types is read, in one place: the
 * library's option table (vublk_options_set) and the tools' own options
 * (--qd, --bs, --time, --threads) both read numbers with number_parse,
 * so "1.5k", "0x10" or "1e3" mean the same, or are refused alike,
 * wherever they are typed.  Self-contained (libc only): the tools compile
 * this file into themselves too, as the library does not export it. */
#ifndef VUBLK_NUMBER_H
#define VUBLK_NUMBER_H

#include <stdbool.h>

/* Reads text as decimal digits with at most one point, and nothing else
 * before them: no blanks, sign, exponent, hex, "inf" or "nan".  With
 * size_suffix, one of k, M, G, T may follow (any case; powers of 1024),
 * then an optional "i" and then an optional "B" ("4k", "2MiB", "1.5G").
 * Returns true and stores the value in *out; false, leaving *out alone,
 * for any other text.  A long double holds every integer below 2^64
 * exactly on the targets vublk builds for (x86-64's 80-bit, aarch64's
 * 128-bit), so callers can range-check a size before converting it. */
bool number_parse (const char *text, bool size_suffix, long double *out);

#endif
