/* bench/bench_clock.h — the clocks the standalone bench programs read:
 * monotonic time and CPU time, so that every program measures both the
 * same way.  Header-only: the programs link nothing but libc. */
#ifndef VUBLK_BENCH_CLOCK_H
#define VUBLK_BENCH_CLOCK_H

#include <stdint.h>
#include <sys/resource.h>
#include <time.h>

/* Monotonic time in nanoseconds. */
static inline uint64_t
bench_now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* User plus system CPU seconds of who: RUSAGE_SELF, or RUSAGE_CHILDREN
 * for the children already waited for. */
static inline double
bench_cpu_seconds (int who)
{
  struct rusage ru;

  getrusage (who, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
         + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

#endif
