/* copy.h — what the parts of `vublk copy` share: its command line
 * (copy_args.c), its endpoints (copy_endpoint.c) and how it stops on a
 * signal (copy_stop.c). */
#ifndef VUBLK_COPY_H
#define VUBLK_COPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli.h"

/* Bytes moved per request and per read or write of a file or pipe. */
#define COPY_CHUNK (1u << 20)

/* SRC or DST: a device (dev set) or a file, pipe or standard stream. */
struct endpoint {
  const char *name;
  struct vublk *dev;     /* or NULL for an fd */
  int fd;
  uint64_t size;         /* UINT64_MAX if unknown (a pipe) */
  bool holes_read_as_zero; /* output: a regular file copy created or
                            * emptied, so a range skipped stays zero (not
                            * a disk shown as a file: it keeps its size
                            * and data through O_TRUNC) */
};

/* Opens spec ("vhost-user:SOCKET", "-" or a path) for reading, or for
 * output (a file is created or truncated) into *e, with the device
 * options o.  A pipe's buffer is grown to a chunk.  Dies with a message
 * naming spec on failure. */
void open_endpoint (struct endpoint *e, const char *spec, bool output,
                    const struct vublk_options *o);

/* Dies if the specs src and dst name the same vhost-user socket: a
 * device copied onto itself (the backend would also refuse the second
 * connection as busy, after the connect timeout). */
void refuse_same_device (const char *src, const char *dst);

/* Dies if the output dst names the file src reads: opening it for output
 * would truncate the source before a byte was read. */
void refuse_same_file (const struct endpoint *src, const char *dst);

/* Reads up to len bytes from e's fd, retrying short reads; returns the
 * count (less than len only at end of input, or once a stop signal came).
 * Dies naming e on a read error. */
size_t read_full (const struct endpoint *e, uint8_t *buf, size_t len);

/* Writes all len bytes to e's fd; dies naming e on a write error. */
void write_full (const struct endpoint *e, const uint8_t *buf, size_t len);

/* If the next len bytes at e's read position are a hole of a regular
 * file (or a hole running to its end), moves past them and returns how
 * many (len or, at the end, fewer).  Returns 0, the position kept, if
 * data lies there, at the end, or where holes cannot be asked for. */
size_t skip_hole (const struct endpoint *e, size_t len);

/* Moves e's output position len bytes on without writing (e must hold
 * holes_read_as_zero); dies naming e on failure. */
void skip_output (const struct endpoint *e, size_t len);

/* Sets the size of e's output to size, so that a skipped range at its
 * end counts (e must hold holes_read_as_zero); dies naming e on failure. */
void end_output (const struct endpoint *e, uint64_t size);

/* Takes each stop signal the process does not ignore (stop_signals)
 * once: after the first, any of them has its default effect and ends the
 * process.  Without a pipe for the handler they keep that effect. */
void catch_stop_signals (void);

/* The first stop signal taken, or 0. */
int copy_stop_signal (void);

/* Waits until fd has input or a stop signal came; true for input (or
 * when there is no stop signal to watch for). */
bool input_or_stop (int fd);

/* Called between slices of a wait for a request: once a stop signal has
 * come and the waiting has lasted a second (a frozen backend answers
 * only at the request timeout), says so, once. */
void note_wait_after_stop (void);

/* What the command line asked for. */
struct copy_args {
  struct vublk_options o;
  const char *spec[2];          /* SRC, DST */
  bool show_progress;           /* -p, and standard error is a terminal */
  bool allocated;               /* --allocated */
};

/* Parses vublk copy's argv into *a, dying with a usage error (exit 2)
 * naming a bad option or a missing SRC or DST; --help prints the help
 * and exits 0. */
void parse_copy_args (int argc, char **argv, struct copy_args *a);

#endif
