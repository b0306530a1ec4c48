/* nbdkit vhostuser plugin: exports a vhost-user-blk device over NBD.
 *
 *   nbdkit vhostuser [socket=]SOCKET [num-queues=N] [queue-size=N]
 *                    [poll=on|off] [spin=USEC] [connect-timeout=S]
 *                    [reconnect-timeout=S] [request-timeout=S]
 *                    [memory=normal|hugetlb] [ring=auto|split|packed]
 *
 * One vhost-user connection per nbdkit process (qemu-storage-daemon serves
 * one frontend at a time), shared by every NBD connection and thread.
 * Thread model PARALLEL: each nbdkit thread issues its request through
 * libvublk's thread-safe API, so many requests are in flight at once.
 * Unaligned and large requests are served by the core (splitting,
 * read-modify-write); errors keep their errno.  The device is probed
 * in get_ready, so a bad socket fails start-up before nbdkit serves.
 * What the library notices on its own (reconnects and why, tolerated
 * backend quirks) goes to nbdkit_debug, seen with `nbdkit -v`.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "vublk.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

static char *socket_path;
static struct vublk_options opts;
static struct vublk *dev;
static struct vublk_info info;

/* log_opaque of the start-up probe's open (see vhostuser_log). */
static char probing;

/* The library's log callback, called from its threads and from
 * vublk_open's caller: every line goes to nbdkit_debug (which returns at
 * once without -v, so the plugin asks the library for everything).  Lines
 * that mean requests failed also go to nbdkit_error, to be seen without
 * -v; so do warnings of the start-up probe (huge pages missing), which
 * the user should see once, before nbdkit serves. */
static void
vhostuser_log (void *opaque, int level, const char *msg)
{
  const char *name = vublk_log_level_name (level);

  /* nbdkit_debug says "debug:" itself; other levels say what they are. */
  if (level >= VUBLK_LOG_DEBUG)
    nbdkit_debug ("%s", msg);
  else
    nbdkit_debug ("%s: %s", name, msg);
  /* nbdkit_error says "error:" itself; a warning says what it is. */
  if (level <= VUBLK_LOG_ERROR)
    nbdkit_error ("%s", msg);
  else if (opaque == &probing && level <= VUBLK_LOG_WARNING)
    nbdkit_error ("%s: %s", name, msg);
}

static void
vhostuser_load (void)
{
  vublk_options_init (&opts);
  opts.log = vhostuser_log;
  opts.log_level = VUBLK_LOG_DEBUG;
  /* spin stays 0: with each worker driving its own queue, polling 30 us
   * for a reply at queue depth 1 only took a core from the backend
   * (fio nbd engine, 4k QD1 against qemu-storage-daemon on tmpfs: reads
   * slower with spin=30 in 6 runs of 6, by 2-25%; writes 6.7-7.1k
   * against 7.5-8.7k IOPS).  At queue depth 2 spin=30 was faster in 3
   * runs of 4 (13-14k against 10-11k), at 4 and 32 the same. */
  /* nbdkit parks one worker thread per request: each worker drives a
   * virtqueue of its own when the backend has one to spare (run to
   * completion: no completion thread, no hand-off per request).
   * thread-queues=off turns it off. */
  opts.thread_queues = true;
}

static void
vhostuser_unload (void)
{
  vublk_close (dev);
  free (socket_path);
}

/* The name each library option was first given by (the table's own
 * strings), indexed like vublk_option_info; NULL while not given. */
static const char *given_as[64];

/* The index in vublk_option_info of the option key names (by its name or
 * its alias), with *as set to the table's string for key; -1 if none. */
static int
option_index (const char *key, const char **as)
{
  const struct vublk_option_info *opt;

  for (unsigned i = 0; (opt = vublk_option_info (i)); i++) {
    if (!strcmp (opt->name, key))
      *as = opt->name;
    else if (opt->alias && !strcmp (opt->alias, key))
      *as = opt->alias;
    else
      continue;
    return i < sizeof given_as / sizeof given_as[0] ? (int) i : -1;
  }
  return -1;
}

static int
vhostuser_config (const char *key, const char *value)
{
  const char *as = NULL;
  int i;

  if (!strcmp (key, "socket")) {
    /* One export, one backend: a second socket is a mistake, not an
     * override. */
    if (socket_path) {
      nbdkit_error ("socket= given twice (%s, then %s): one backend per "
                    "nbdkit", socket_path, value);
      return -1;
    }
    socket_path = nbdkit_absolute_path (value);
    return socket_path ? 0 : -1;
  }
  /* Every other key is one of the library's options, by the same name
   * as vublk's long options (num-queues also as queues): one table of
   * names, bounds and messages for every program.  Given twice, under
   * either name, it is a mistake too. */
  if ((i = option_index (key, &as)) >= 0 && given_as[i]) {
    nbdkit_error ("%s= given twice (first as %s=): give it once", key,
                  given_as[i]);
    return -1;
  }
  if (vublk_options_set (&opts, key, value) == 0) {
    if (i >= 0)
      given_as[i] = as;
    return 0;
  }
  if (!strstr (vublk_get_error (), "unknown option")) {
    nbdkit_error ("%s", vublk_get_error ());
    return -1;
  }
  nbdkit_error ("unknown parameter '%s'", key);
  return -1;
}

static int
vhostuser_config_complete (void)
{
  if (!socket_path) {
    nbdkit_error ("you must supply the socket=SOCKET parameter");
    return -1;
  }
  return 0;
}

/* --help text: socket=, then every library option from its table (the
 * plugin changes one default: thread-queues=on).  Built when nbdkit
 * loads the plugin, before it reads the plugin's struct. */
static char config_help[4096];

static void
build_config_help (void)
{
  const struct vublk_option_info *opt;
  size_t len;

  len = snprintf (config_help, sizeof config_help, "%-27s%s\n",
                  "[socket=]SOCKET", "(required) vhost-user-blk socket.");
  for (unsigned i = 0; (opt = vublk_option_info (i)); i++) {
    char key[64];
    const char *help = opt->help;

    if (!strcmp (opt->name, "readonly"))
      continue;            /* nbdkit -r */
    /* An alias is qemu's spelling (num-queues): the one users know. */
    snprintf (key, sizeof key, "%s=%s", opt->alias ? opt->alias : opt->name,
              opt->value_hint);
    if (!strcmp (opt->name, "thread-queues"))
      help = "each nbdkit worker drives a virtqueue of its own while one "
             "is left to share (default on here: ask the backend for more "
             "queues than nbdkit has threads)";
    if (!strcmp (opt->name, "spin"))
      help = "at queue depth 1-2, poll this long for each reply before "
             "sleeping (default 0 = off)";
    if (len < sizeof config_help)
      len += snprintf (config_help + len, sizeof config_help - len,
                       "%-27s%s.\n", key, help);
  }
  if (len < sizeof config_help)
    snprintf (config_help + len, sizeof config_help - len,
              "nbdkit -v shows reconnects and tolerated backend habits.");
}

static void
vhostuser_dump_plugin (void)
{
  /* nbdkit prints the plugin's version (.version) itself. */
  printf ("libvublk_version=%s\n", vublk_version ());
}

/* Probes the device before nbdkit binds its socket, starts a --run
 * command or forks: a full open with the configured options (only its log
 * warnings are shown without -v, see vhostuser_log), closed again at
 * once.  A bad socket thus stops start-up here, with the library's
 * message on stderr, exit 1 and no NBD socket left behind.  The open starts
 * library threads, which must not cross nbdkit's fork; vublk_close joins
 * them all and hangs up before returning, so the fork sees none and
 * one-client backends (qemu-storage-daemon) are free again for
 * after_fork's open. */
static int
vhostuser_get_ready (void)
{
  struct vublk_options probe_opts = opts;
  struct vublk *probe;

  probe_opts.log_opaque = &probing;
  probe = vublk_open (socket_path, &probe_opts);
  if (!probe) {
    nbdkit_error ("%s", vublk_get_error ());
    return -1;
  }
  vublk_close (probe);
  return 0;
}

/* Opens the device for serving, after nbdkit has forked into the
 * background (the library's threads would not survive the fork) and
 * before any client connects.  get_ready has checked the socket; this
 * fails only if the backend went away in between.  nbdkit calls
 * after_fork whether or not it forks. */
static int
vhostuser_after_fork (void)
{
  dev = vublk_open (socket_path, &opts);
  if (!dev) {
    nbdkit_error ("%s", vublk_get_error ());
    return -1;
  }
  vublk_get_info (dev, &info);
  return 0;
}

static void *
vhostuser_open (int readonly)
{
  (void) readonly;
  return dev;       /* every connection shares the one device */
}

static int64_t
vhostuser_get_size (void *handle)
{
  return vublk_get_size (handle);
}

/* The core serves any alignment (read-modify-write), so the minimum is 1;
 * the preferred size is the physical block (at least 4 KiB) so clients
 * avoid read-modify-write; the maximum is what nbdkit allows. */
static int
vhostuser_block_size (void *handle, uint32_t *minimum, uint32_t *preferred,
                      uint32_t *maximum)
{
  (void) handle;
  *minimum = 1;
  *preferred = info.physical_block_size > 4096 ? info.physical_block_size
               : 4096;
  *maximum = 0xffffffff;
  return 0;
}

static int
vhostuser_can_write (void *handle)
{
  (void) handle;
  return !info.readonly;
}

/* The capabilities follow what the device negotiated (see the man page):
 *
 * Flush is always offered.  Without VIRTIO_BLK_F_FLUSH the device has no
 * volatile cache, every completed write is already stable, and the core
 * completes a flush at once; telling clients "no flush" instead would make
 * libnbd refuse their flush calls.  FUA is native for the same reason: the
 * core writes and then flushes when there is a cache, and needs nothing
 * more when there is none. */
static int
vhostuser_can_flush (void *handle)
{
  (void) handle;
  return 1;
}

static int
vhostuser_can_trim (void *handle)
{
  (void) handle;
  return info.can_discard;
}

/* nbdkit's plugin can_zero is a boolean: 0 makes nbdkit emulate zero with
 * writes of zeroes itself, without calling .zero. */
static int
vhostuser_can_zero (void *handle)
{
  (void) handle;
  return info.can_write_zeroes;
}

/* A fast zero is possible only with write-zeroes: the emulation writes. */
static int
vhostuser_can_fast_zero (void *handle)
{
  (void) handle;
  return info.can_write_zeroes;
}

static int
vhostuser_can_fua (void *handle)
{
  (void) handle;
  return NBDKIT_FUA_NATIVE;
}

static int
vhostuser_can_multi_conn (void *handle)
{
  (void) handle;
  return 1;         /* one device; a flush covers every connection */
}

/* Reports an operation the library failed with -err: its message names
 * the socket, the operation and the reason (a backend gone for good says
 * so on every request, not only once in the log).  errno is kept. */
static int
fail (int err)
{
  nbdkit_error ("%s", vublk_get_error ());
  errno = -err;
  return -1;
}

static int
vhostuser_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
                 uint32_t flags)
{
  ssize_t r;

  (void) flags;
  r = vublk_pread (handle, buf, count, offset);
  if (r < 0)
    return fail (r);
  if ((uint32_t) r != count) {
    nbdkit_error ("%s: read at offset %" PRIu64 ": %zd of %" PRIu32
                  " bytes", socket_path, offset, r, count);
    errno = EIO;
    return -1;
  }
  return 0;
}

static int
vhostuser_pwrite (void *handle, const void *buf, uint32_t count,
                  uint64_t offset, uint32_t flags)
{
  ssize_t r = vublk_pwrite (handle, buf, count, offset,
                            flags & NBDKIT_FLAG_FUA ? VUBLK_F_FUA : 0);

  return r < 0 ? fail (r) : 0;
}

static int
vhostuser_flush (void *handle, uint32_t flags)
{
  int r;

  (void) flags;
  r = vublk_flush (handle);
  return r < 0 ? fail (r) : 0;
}

static int
vhostuser_trim (void *handle, uint32_t count, uint64_t offset,
                uint32_t flags)
{
  int r = vublk_discard (handle, offset, count);

  if (r == 0 && (flags & NBDKIT_FLAG_FUA))
    r = vublk_flush (handle);
  return r < 0 ? fail (r) : 0;
}

static int
vhostuser_zero (void *handle, uint32_t count, uint64_t offset,
                uint32_t flags)
{
  int r;

  r = vublk_write_zeroes (handle, offset, count,
                          flags & NBDKIT_FLAG_MAY_TRIM ? VUBLK_F_UNMAP : 0);
  if (r == 0 && (flags & NBDKIT_FLAG_FUA))
    r = vublk_flush (handle);
  return r < 0 ? fail (r) : 0;
}

static struct nbdkit_plugin plugin = {
  .name = "vhostuser",
  .longname = "nbdkit vhost-user-blk plugin",
  .version = VUBLK_VERSION_STRING,
  .description = "Export a vhost-user-blk device (qemu-storage-daemon, "
                 "SPDK) over NBD",
  .load = vhostuser_load,
  .unload = vhostuser_unload,
  .config = vhostuser_config,
  .config_complete = vhostuser_config_complete,
  .config_help = config_help,
  .magic_config_key = "socket",
  .dump_plugin = vhostuser_dump_plugin,
  .get_ready = vhostuser_get_ready,
  .after_fork = vhostuser_after_fork,
  .open = vhostuser_open,
  .get_size = vhostuser_get_size,
  .block_size = vhostuser_block_size,
  .can_write = vhostuser_can_write,
  .can_flush = vhostuser_can_flush,
  .can_trim = vhostuser_can_trim,
  .can_zero = vhostuser_can_zero,
  .can_fast_zero = vhostuser_can_fast_zero,
  .can_fua = vhostuser_can_fua,
  .can_multi_conn = vhostuser_can_multi_conn,
  .pread = vhostuser_pread,
  .pwrite = vhostuser_pwrite,
  .flush = vhostuser_flush,
  .trim = vhostuser_trim,
  .zero = vhostuser_zero,
  .errno_is_preserved = 1,
};

NBDKIT_REGISTER_PLUGIN (plugin)

/* Runs when nbdkit loads the plugin, before plugin_init hands nbdkit the
 * struct above. */
static void __attribute__ ((constructor))
vhostuser_init_help (void)
{
  build_config_help ();
  plugin.config_help = config_help;
}
