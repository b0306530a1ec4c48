/* frontend.h — what vublk and vublk-fuse share beside the library: strict
 * parsing of what users type, the device options from the library's
 * table, and running in the background (fork, a ready notification to
 * the waiting parent, a pid file).  A small static library (common/).
 */
#ifndef VUBLK_FRONTEND_H
#define VUBLK_FRONTEND_H

#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vublk.h"

#define EXIT_USAGE 2
/* How vublk copy names a device among files ("vhost-user:SOCKET"). */
#define DEVICE_PREFIX "vhost-user:"
#define VUBLK_CLI_VERSION VUBLK_VERSION_STRING  /* the tools ship with the library */

/* The name error messages start with ("vublk" unless a program sets it). */
extern const char *program_name;

/* From now on, log_message and log_formatted write to syslog (facility
 * daemon, tagged with program_name and the pid) instead of stderr: for a
 * background process that let go of its stderr. */
void log_to_syslog (void);

/* Logs one message at a library log level (VUBLK_LOG_*): "PROGRAM:
 * MESSAGE" on stderr, or to syslog (log_to_syslog).  Thread-safe. */
void log_message (int level, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* Writes an already formatted message at syslog priority (FUSE's log
 * levels are syslog's): as given on stderr, or to syslog. */
void log_formatted (int priority, const char *fmt, va_list ap)
  __attribute__ ((format (printf, 2, 0)));

/* Prints "PROGRAM: MESSAGE" on stderr and exits with code. */
void die (int code, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3), noreturn));

/* Parses a size as the library's options do (number_parse: decimal, an
 * optional k/M/G/T suffix, powers of 1024, "1.5k" = 1536); dies with a
 * usage error naming option unless it is a whole number in [min, max]. */
uint64_t parse_size (const char *option, const char *value, uint64_t min,
                     uint64_t max);

/* Parses a count (decimal digits, no suffix: "1k" threads or
 * microseconds would be a surprise), as parse_size does otherwise. */
uint64_t parse_count (const char *option, const char *value, uint64_t min,
                      uint64_t max);

/* Parses seconds, 0..86400 (decimal digits with at most one point: no
 * sign, exponent or hex), dying with a usage error. */
double parse_seconds (const char *option, const char *value);

/* vublk_options_init, plus library warnings and errors (a backend lost,
 * huge pages missing) logged (log_message: stderr, or syslog in the
 * background); -v adds the rest. */
void device_options_init (struct vublk_options *o);

/* Fills out (up to max entries) with getopt_long entries for every
 * device option: val with_value for those that take a value, val flag
 * for flags (on when present).  Returns how many were written.  A
 * program's own options come first in its table, so its getopt stays in
 * step with the library's list. */
size_t device_long_options (struct option *out, size_t max, int with_value,
                            int flag);

/* -v/--verbose: every library event on stderr, not only warnings and
 * errors. */
void device_options_verbose (struct vublk_options *o);

/* The help text of the common device options, made from the library's
 * table of options (vublk_option_info), so it lists exactly the device
 * options parse_command_line accepts. */
const char *device_options_help (void);

/* How a tool reads its command line (parse_command_line). */
struct command_line {
  const char *command;        /* for "try COMMAND --help": "vublk info" */
  const char *prefix;         /* before every message: "info: " or "" */
  const struct option *own;   /* the tool's own long options, { NULL } ended
                                 (none named help, verbose or a device
                                 option), or NULL */
  const char *short_options;  /* the tool's own short options, or NULL */
  bool options_first;         /* options end at the first operand */
  void (*usage) (FILE *f);    /* the tool's help */
  /* Takes each of the tool's own options: code is its getopt value (a
   * letter or the val in own), value its value or NULL; also 'v' after
   * -v/--verbose set the device options' log level.  Dies on a bad one. */
  void (*option) (void *opaque, int code, const char *value);
  void *opaque;
};

/* Reads argv with getopt_long: the tool's own options (cl->option), the
 * library's device options and flags into o (vublk_options_set; a bad
 * value dies naming it), -v/--verbose, and -h/--help (cl->usage on stdout,
 * then exit 0).  Both "--name value" and "--name=value" work, and "--"
 * ends the options.  Unless cl->options_first, options may follow
 * operands (argv is reordered, operands last).  Dies with a usage error
 * naming an unknown option or one without its value.  Returns the index
 * in argv of the first operand. */
int parse_command_line (const struct command_line *cl, int argc, char **argv,
                        struct vublk_options *o);

/* The socket path a SOCKET operand names: the operand itself, or, when
 * no file has that name, what follows a "vhost-user:" prefix (copy's way
 * of naming a device, typed where a SOCKET is asked for). */
const char *socket_operand (const char *operand);

/* parse_command_line for a command whose one operand is SOCKET: returns
 * its socket_operand, or dies with a usage error if there is none, an
 * empty one, or more than one. */
const char *only_socket (const struct command_line *cl, int argc,
                         char **argv, struct vublk_options *o);

/* Opens socket with o, dying with exit 1 and the library's message. */
struct vublk *open_device (const char *socket, const struct vublk_options *o);

/* daemon.c ------------------------------------------------------------ */

/* Opens /dev/null on standard input, output or error if the program was
 * started with one closed: otherwise the next fd opened (a library
 * eventfd, /dev/fuse) takes its number, and input is read from it or
 * output written to it.  Call first thing in main. */
void keep_standard_fds_open (void);

/* Forks.  The parent waits until the child reports the mount (or
 * whatever it serves) ready — then exits 0 — or failed: it prints the
 * child's message and exits 1.  Returns in the child, a session leader
 * whose start-up messages go to the parent (daemon_status_fd).  The
 * child dies with its parent until daemon_release: nothing is set up
 * yet that a kill would leave behind. */
void daemon_start (void);

/* The pipe to the waiting parent while the child starts, else -1. */
int daemon_status_fd (void);

/* In the child, once it has something to undo (a device open): stops
 * dying with the parent.  Returns false if the parent is already gone:
 * the caller undoes what it did and exits, since the user was told it
 * failed.  True when not daemonized. */
bool daemon_release (void);

/* Tells the waiting parent the service is ready and detaches stdin,
 * stdout and (unless keep_stderr) stderr, whose messages then go to
 * syslog (log_to_syslog).  Only the first call, from any
 * thread, does anything.  Returns false if the parent turned out to be
 * gone (daemon_parent_lost then says so): the caller takes the service
 * down again. */
bool daemon_report_ready (bool keep_stderr);

/* True once daemon_report_ready found the parent gone. */
bool daemon_parent_lost (void);

/* Writes this process's pid to path.  Returns 0 or -errno. */
int write_pidfile (const char *path);

/* path made absolute against the current directory (a daemon changes to
 * "/" once ready, and a relative path would then name another file), in
 * memory the caller keeps; symbolic links are left as they are.  Dies
 * if out of memory or the current directory is gone. */
char *absolute_path (const char *path);

/* Fills *set with the signals that ask a frontend to stop: SIGINT,
 * SIGTERM and SIGHUP.  With skip_ignored, leaves out those the process
 * ignores: a shell starts its background jobs with SIGINT ignored, and
 * the user meant them to pass it by (a blocked signal is kept pending
 * even when ignored, so blocking it would catch it anyway). */
void stop_signals (sigset_t *set, bool skip_ignored);

/* Says on stderr that "vublk: command" (bench, copy) took a stop signal
 * but still waits for its requests in flight, and that a second signal
 * quits at once.  For a wait that has lasted a second: the backend may
 * be frozen, and the request timeout is long. */
void say_still_draining (const char *command);

#endif /* VUBLK_FRONTEND_H */
