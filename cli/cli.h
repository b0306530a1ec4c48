/* cli.h — what the vublk subcommands share: strict option parsing and the
 * common device options. */
#ifndef VUBLK_CLI_H
#define VUBLK_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "vublk.h"

#define EXIT_USAGE 2
#define VUBLK_CLI_VERSION "0.1.0"

/* The name error messages start with ("vublk" unless a program sets it). */
extern const char *program_name;

/* Prints "PROGRAM: MESSAGE" on stderr and exits with code. */
void die (int code, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3), noreturn));

/* Parses a size/count with optional k/M/G/T suffix (powers of 1024);
 * dies with a usage error naming option if it is not a positive number
 * within [min, max]. */
uint64_t parse_size (const char *option, const char *value, uint64_t min,
                     uint64_t max);

/* Parses seconds (a non-negative decimal), dying with a usage error. */
double parse_seconds (const char *option, const char *value);

/* Handles an option common to every subcommand that opens a device;
 * returns true if name (with value) was one. */
bool parse_device_option (struct vublk_options *o, const char *name,
                          const char *value);

/* vublk_options_init, plus library warnings and errors (a backend lost,
 * huge pages missing) printed on stderr; -v adds the rest. */
void device_options_init (struct vublk_options *o);

/* Handles a flag common to every program that opens a device (--poll,
 * -v/--verbose: library events to stderr); returns true if arg was one. */
bool parse_device_flag (struct vublk_options *o, const char *arg);

/* The help text for the common device options. */
extern const char device_options_help[];

/* Opens socket with o, dying with exit 1 and the library's message. */
struct vublk *open_device (const char *socket, const struct vublk_options *o);

int cmd_info (int argc, char **argv);
int cmd_copy (int argc, char **argv);
int cmd_bench (int argc, char **argv);

#endif
