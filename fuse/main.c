/* main.c — vublk-fuse SOCKET MOUNTPOINT: shows a vhost-user-blk device as
 * one regular file through FUSE.
 *
 * Start-up order matters: parse and check everything the user typed,
 * fork into the background if asked (the device's threads would not
 * survive a fork), open the device (a bad socket fails before anything is
 * mounted), mount, write the pid file, and only then tell a waiting
 * parent that the mount is ready.  A background child whose parent has
 * died never mounts (see daemonize).  On SIGINT/SIGTERM/SIGHUP the device
 * is flushed and then unmounted; after `fusermount3 -u` it is flushed and
 * closed.
 *
 * Exit status: 0 after a clean unmount, 1 on a runtime failure (socket,
 * mount), 2 on a usage error. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "frontend.h"
#include "vublkfs.h"

struct config {
  char *socket;               /* absolute */
  char *mountpoint;           /* absolute */
  struct stat mount_st;       /* the mountpoint before mounting */
  const char *filename;
  bool filename_given;        /* --filename was on the command line */
  char *fuse_opts;            /* comma-joined -o values, or NULL */
  char *pidfile;              /* absolute, or NULL */
  bool daemon;
  bool verbose;               /* -v: keeps stderr open when daemonized */
  bool readonly;              /* -r, or -o ro (ro_among) */
  bool cache;
  unsigned threads;
  unsigned spin_us;           /* --spin: poll this long before sleeping */
  bool clone_fd;
  struct vublk_options dev_opts;
};

/* --spin default: long enough to catch a 4k completion from a backend on
 * the same machine, qemu-storage-daemon's thread pool included, at
 * queue depths up to 8 (vublk_tq_spin's bound).  Measured on two cores,
 * fio 4k random writes, interleaved: at queue depth 1 7-12k IOPS with
 * 30 us, 14-15k with 50-100; at depth 2 100 did best (29k against 21k
 * with 50).  The spin ends when something arrives, so it costs CPU only
 * when the loop really goes idle. */
#define DEFAULT_SPIN_US 100

/* -v: stderr stays open in the background (the log goes there). */
static bool keep_stderr;


static void
usage (FILE *f)
{
  fprintf (f,
    "Usage: vublk-fuse [OPTIONS] SOCKET MOUNTPOINT\n"
    "Show the vhost-user-blk device at SOCKET as one regular file.\n"
    "MOUNTPOINT is a regular file (the device appears as that file) or a\n"
    "directory (it then holds one file, 'disk').\n\n"
    "Options:\n"
    "  -r, --readonly           refuse writes (EROFS)\n"
    "      --cache              cache reads in the page cache, kept across\n"
    "                           opens; writes still go straight to the\n"
    "                           device (default: direct I/O; mmap works\n"
    "                           either way)\n"
    "      --filename NAME      name of the file in a directory mount\n"
    "  -o OPTS                  FUSE mount options (allow_other, ...)\n"
    "  -d, --daemon             run in the background once mounted (with -v,\n"
    "                           stderr stays open for the log)\n"
    "      --pidfile FILE       write the process id to FILE\n"
    "      --threads N          FUSE threads (default 1: requests never wait,\n"
    "                           and one thread batches them best; 2 helps\n"
    "                           large sequential writes)\n"
    "      --clone-fd           libfuse's loop, a /dev/fuse clone per thread\n"
    "      --spin USEC          when idle, poll for requests and completions\n"
    "                           this long before sleeping (default %u;\n"
    "                           0 = sleep at once, no CPU spent idle)\n"
    "%s"
    "  -h, --help               this help\n"
    "  -V, --version            versions\n\n"
    "Unmount with `fusermount3 -u MOUNTPOINT` or SIGINT/SIGTERM.\n"
    "Exit status: 0 unmounted cleanly, 1 runtime error, 2 usage error.\n",
    DEFAULT_SPIN_US, device_options_help ());
}

/* Reports a start-up failure where the user will see it and exits 1. */
static void __attribute__ ((format (printf, 1, 2), noreturn))
startup_fail (const char *fmt, ...)
{
  char msg[1024];
  va_list ap;
  int n;

  n = snprintf (msg, sizeof msg, "%s: ", program_name);
  va_start (ap, fmt);
  vsnprintf (msg + n, sizeof msg - n, fmt, ap);
  va_end (ap);
  if (daemon_status_fd () >= 0) {
    dprintf (daemon_status_fd (), "%s\n", msg);
    close (daemon_status_fd ());
  }
  else
    fprintf (stderr, "%s\n", msg);
  exit (1);
}

/* Appends one -o value to cfg->fuse_opts. */
static void
add_fuse_opts (struct config *cfg, const char *opts)
{
  size_t old = cfg->fuse_opts ? strlen (cfg->fuse_opts) : 0;
  char *s = realloc (cfg->fuse_opts, old + strlen (opts) + 2);

  if (!s)
    die (1, "out of memory");
  if (old)
    s[old++] = ',';
  strcpy (s + old, opts);
  cfg->fuse_opts = s;
}

enum { KEY_RO, KEY_RW };

/* fuse_opt_parse's callback for ro_among: notes which came last. */
static int
note_ro_rw (void *data, const char *arg, int key, struct fuse_args *out)
{
  (void) arg;
  (void) out;
  if (key == KEY_RO || key == KEY_RW)
    *(bool *) data = key == KEY_RO;
  return 1;
}

/* True if the last "ro" or "rw" among the comma-separated FUSE options
 * opts is "ro", as for the kernel.  libfuse splits them, so an escaped
 * comma ("fsname=a\,ro") is part of a value, not a separator.  Options
 * libfuse cannot parse are reported later (check_fuse_opts). */
static bool
ro_among (const char *opts)
{
  static const struct fuse_opt keys[] = {
    FUSE_OPT_KEY ("ro", KEY_RO), FUSE_OPT_KEY ("rw", KEY_RW), FUSE_OPT_END,
  };
  struct fuse_args args = FUSE_ARGS_INIT (0, NULL);
  bool ro = false;

  if (fuse_opt_add_arg (&args, program_name) || fuse_opt_add_arg (&args, "-o")
      || fuse_opt_add_arg (&args, opts))
    die (1, "out of memory");
  if (fuse_opt_parse (&args, &ro, keys, note_ro_rw) == -1)
    ro = false;
  fuse_opt_free_args (&args);
  return ro;
}

/* True if path, or a directory it lies in, is the file or directory mnt
 * describes: once mounted there, path would be reached through the mount
 * this process serves. */
static bool
path_is_within (const char *path, const struct stat *mnt)
{
  char buf[PATH_MAX];
  struct stat st;
  char *slash;

  if (snprintf (buf, sizeof buf, "%s", path) >= (int) sizeof buf)
    return false;
  for (;;) {
    if (stat (buf, &st) == 0 && st.st_dev == mnt->st_dev
        && st.st_ino == mnt->st_ino)
      return true;
    slash = strrchr (buf, '/');
    if (!slash || slash == buf)
      return false;
    *slash = '\0';
  }
}

enum { OPT_CACHE = 256, OPT_FILENAME, OPT_PIDFILE, OPT_THREADS,
       OPT_CLONE_FD, OPT_SPIN };
static const struct option own_opts[] = {
  { "readonly", no_argument, NULL, 'r' },
  { "cache", no_argument, NULL, OPT_CACHE },
  { "filename", required_argument, NULL, OPT_FILENAME },
  { "daemon", no_argument, NULL, 'd' },
  { "pidfile", required_argument, NULL, OPT_PIDFILE },
  { "threads", required_argument, NULL, OPT_THREADS },
  { "clone-fd", no_argument, NULL, OPT_CLONE_FD },
  { "spin", required_argument, NULL, OPT_SPIN },
  { "version", no_argument, NULL, 'V' },
  { NULL, 0, NULL, 0 },
};

/* Takes vublk-fuse's own options (parse_command_line) into the config
 * at opaque, dying with a usage error on a bad value. */
static void
take_option (void *opaque, int code, const char *value)
{
  struct config *cfg = opaque;

  switch (code) {
  case 'r': cfg->readonly = true; break;
  case OPT_CACHE: cfg->cache = true; break;
  case OPT_FILENAME: cfg->filename = value; cfg->filename_given = true; break;
  case 'o': add_fuse_opts (cfg, value); break;
  case 'd': cfg->daemon = true; break;
  case OPT_PIDFILE:
    free (cfg->pidfile);
    cfg->pidfile = absolute_path (value);
    break;
  case OPT_THREADS:
    cfg->threads = parse_count ("--threads", value, 1, 256);
    break;
  case OPT_CLONE_FD: cfg->clone_fd = true; break;
  case OPT_SPIN:
    cfg->spin_us = parse_count ("--spin", value, 0, 10000);
    break;
  case 'v': cfg->verbose = true; break;
  case 'V':
    printf ("vublk-fuse %s\nlibvublk %s\nFUSE library %s\n",
            VUBLK_CLI_VERSION, vublk_version (), fuse_pkgversion ());
    exit (0);
  }
}

static void
parse_args (int argc, char **argv, struct config *cfg)
{
  char resolved[PATH_MAX];

  memset (cfg, 0, sizeof *cfg);
  cfg->filename = "disk";
  cfg->threads = 1;
  cfg->spin_us = DEFAULT_SPIN_US;
  device_options_init (&cfg->dev_opts);
  optind = parse_command_line (&(struct command_line) {
      .command = "vublk-fuse", .prefix = "", .own = own_opts,
      .short_options = "ro:dV", .options_first = true, .usage = usage,
      .option = take_option, .opaque = cfg,
    }, argc, argv, &cfg->dev_opts);
  if (argc - optind != 2)
    die (EXIT_USAGE, "expected SOCKET and MOUNTPOINT, got %d argument%s "
         "(try vublk-fuse --help)", argc - optind,
         argc - optind == 1 ? "" : "s");
  if (!*socket_operand (argv[optind]))
    die (EXIT_USAGE, "no SOCKET given (an empty argument)");
  /* Both are used again after -d changed to "/": reconnecting, and
   * removing the pid file at exit. */
  cfg->socket = absolute_path (socket_operand (argv[optind]));
  if (!*cfg->filename || strchr (cfg->filename, '/')
      || !strcmp (cfg->filename, ".") || !strcmp (cfg->filename, "..")
      || strlen (cfg->filename) > 255)
    die (EXIT_USAGE, "--filename: '%s' is not a valid file name",
         cfg->filename);
  if (stat (argv[optind + 1], &cfg->mount_st) == -1)
    die (EXIT_USAGE, "mountpoint %s: %s", argv[optind + 1], strerror (errno));
  if (!S_ISREG (cfg->mount_st.st_mode) && !S_ISDIR (cfg->mount_st.st_mode))
    die (EXIT_USAGE, "mountpoint %s is neither a regular file nor a "
         "directory", argv[optind + 1]);
  if (cfg->filename_given && S_ISREG (cfg->mount_st.st_mode))
    die (EXIT_USAGE, "--filename names the file of a directory mount, but "
         "mountpoint %s is a regular file (the device appears as it)",
         argv[optind + 1]);
  if (!realpath (argv[optind + 1], resolved))
    die (EXIT_USAGE, "mountpoint %s: %s", argv[optind + 1], strerror (errno));
  cfg->mountpoint = strdup (resolved);
  if (cfg->pidfile && path_is_within (cfg->pidfile, &cfg->mount_st))
    die (EXIT_USAGE, "--pidfile %s: inside the mount point %s (writing it "
         "there would wait for this very process)", cfg->pidfile,
         cfg->mountpoint);
  /* -o ro is -r, so that the file's mode and the device's open say so
   * too. */
  cfg->readonly = cfg->readonly || (cfg->fuse_opts && ro_among (cfg->fuse_opts));
  cfg->dev_opts.readonly = cfg->readonly;
}

/* Blocks the stop signals (stop_signals) in this thread and the threads
 * it creates next, saving the previous mask in *old: only the thread
 * running the FUSE loop should take them. */
static void
block_termination_signals (sigset_t *old)
{
  sigset_t block;

  stop_signals (&block, false);
  pthread_sigmask (SIG_BLOCK, &block, old);
}

/* Opens the device, or exits with the library's message.  The signals
 * stay as they are: the library's threads block every signal themselves
 * (thread.c), and SIGINT or SIGTERM during a long open (a busy or silent
 * backend, up to the connect timeout) end the process at once, with
 * nothing mounted yet to undo. */
static struct vublk *
open_device_or_fail (const struct config *cfg)
{
  struct vublk *dev = vublk_open (cfg->socket, &cfg->dev_opts);

  if (!dev)
    startup_fail ("%s", vublk_get_error ());
  return dev;
}

/* Sets up fs for the opened device and the mountpoint's attributes. */
static void
init_fs (struct vublkfs *fs, const struct config *cfg, struct vublk *dev)
{
  const struct stat *st = &cfg->mount_st;

  memset (fs, 0, sizeof *fs);
  fs->dev = dev;
  vublk_get_info (dev, &fs->info);
  fs->readonly = cfg->readonly || fs->info.readonly;
  fs->cache = cfg->cache;
  fs->root_is_file = S_ISREG (st->st_mode);
  fs->filename = cfg->filename;
  fs->socket_path = cfg->socket;
  pthread_mutex_init (&fs->attr_lock, NULL);
  fs->mode = fs->root_is_file ? st->st_mode & 07777 : st->st_mode & 0666;
  if (fs->readonly)
    fs->mode &= ~0222;
  fs->dir_mode = st->st_mode & 07777;
  fs->uid = st->st_uid;
  fs->gid = st->st_gid;
  fs->atime = st->st_atim;
  fs->mtime = st->st_mtim;
  fs->ctime = st->st_ctim;
}

/* Builds FUSE's arguments: our fixed options, then the user's -o. */
static void
build_fuse_args (struct fuse_args *args, const struct config *cfg,
                 bool readonly)
{
  char opts[256];

  snprintf (opts, sizeof opts, "fsname=vublk,subtype=vublk,"
            "default_permissions%s",
            readonly ? ",ro" : "");
  if (fuse_opt_add_arg (args, program_name) || fuse_opt_add_arg (args, "-o")
      || fuse_opt_add_arg (args, opts))
    startup_fail ("out of memory");
  if (cfg->fuse_opts && (fuse_opt_add_arg (args, "-o")
                         || fuse_opt_add_arg (args, cfg->fuse_opts)))
    startup_fail ("out of memory");
}


/* The request loop of one thread.  No handler ever waits for the device,
 * so one thread serves a whole queue depth: it reads every request the
 * kernel has queued, submitting each with the device plugged, and tells
 * the backend once when /dev/fuse runs dry — one notification and one
 * backend wake-up per burst instead of per request, and no hand-offs
 * between threads.  When /dev/fuse runs dry it polls for spin_ns for the
 * next request and for completions (answering them here) before it
 * sleeps.  Returns the exit code. */
static int
serve_plugged (struct fuse_session *se, struct vublk *dev, uint64_t spin_ns)
{
  struct fuse_buf buf = { .mem = NULL };
  int fd = fuse_session_fd (se), r = 0, n;
  bool plugged = false, ready = false;
  /* Run to completion: this thread drives a queue of its own when one is
   * free, and waits on /dev/fuse and that queue's call eventfd at once;
   * replies are sent from here, with no completion thread. */
  struct vublk_tq *tq = vublk_tq_open (dev);

  vublkfs_drive (tq);
  while (!fuse_session_exited (se)) {
    if (!plugged) {
      vublk_aio_plug (dev);
      plugged = true;
    }
    n = fuse_session_receive_buf (se, &buf);
    if (n == -EAGAIN) {
      struct pollfd pfd[2] = {
        { .fd = fd, .events = POLLIN },
        { .fd = tq ? vublk_tq_fd (tq) : -1, .events = POLLIN },
      };

      vublk_aio_unplug (dev);
      plugged = false;
      if (tq) {
        if (vublk_tq_process (tq, 0, 0) > 0
            || (spin_ns && vublk_tq_spin (tq, spin_ns, fd) > 0)
            || vublk_tq_arm (tq) != 0)
          continue;
      }
      else if (spin_ns && vublk_aio_spin (dev, spin_ns, fd))
        continue;
      poll (pfd, 2, 500);   /* a signal or unmount also ends the wait */
      continue;
    }
    if (n == -EINTR)
      continue;
    if (n <= 0) {
      r = n < 0;
      break;
    }
    fuse_session_process_buf (se, &buf);
    /* The first request is the kernel's INIT: once it is answered
     * without ending the session, the mount really works. */
    if (!ready && !fuse_session_exited (se)) {
      if (!daemon_report_ready (keep_stderr))
        fuse_session_exit (se);
      ready = true;
    }
  }
  if (plugged)
    vublk_aio_unplug (dev);
  /* Answer what is still in flight before giving the queue back. */
  while (tq && vublk_tq_process (tq, 0, 0) > 0)
    ;
  vublkfs_drive (NULL);
  vublk_tq_close (tq);
  free (buf.mem);
  return r;
}

struct loop_thread {
  pthread_t thread;
  struct fuse_session *se;
  struct vublk *dev;
  uint64_t spin_ns;
  int r;
};

static void *
loop_thread (void *arg)
{
  struct loop_thread *t = arg;

  t->r = serve_plugged (t->se, t->dev, t->spin_ns);
  return NULL;
}

/* Runs serve_plugged on n threads (this one included); the others do not
 * take termination signals, so a signal always interrupts this thread's
 * wait, and they notice the session ending within their poll timeout. */
static int
serve_plugged_threads (struct fuse_session *se, struct vublk *dev,
                       unsigned n, uint64_t spin_ns)
{
  struct loop_thread *t = calloc (n, sizeof *t);
  sigset_t old;
  unsigned started = 0;
  int r, fd_flags;

  if (!t)
    return 1;
  /* Every loop reads until EAGAIN, then polls. */
  fd_flags = fcntl (fuse_session_fd (se), F_GETFL);
  fcntl (fuse_session_fd (se), F_SETFL, fd_flags | O_NONBLOCK);
  block_termination_signals (&old);
  for (unsigned i = 1; i < n; i++) {
    t[i] = (struct loop_thread) { .se = se, .dev = dev, .spin_ns = spin_ns };
    if (pthread_create (&t[i].thread, NULL, loop_thread, &t[i]) == 0)
      started = i;
    else
      break;
  }
  pthread_sigmask (SIG_SETMASK, &old, NULL);
  r = serve_plugged (se, dev, spin_ns);
  fuse_session_exit (se);
  for (unsigned i = 1; i <= started; i++) {
    pthread_join (t[i].thread, NULL);
    r |= t[i].r;
  }
  free (t);
  return r;
}

/* Serves requests until unmounted or signalled; returns the exit code.
 * --clone-fd uses libfuse's multi-threaded loop (a /dev/fuse clone per
 * worker); otherwise --threads plugged loops. */
static int
serve (struct fuse_session *se, const struct config *cfg, struct vublk *dev)
{
  struct fuse_loop_config *loop;
  int r;

  if (!cfg->clone_fd)
    return serve_plugged_threads (se, dev, cfg->threads,
                                  cfg->spin_us * 1000ull);
  loop = fuse_loop_cfg_create ();
  fuse_loop_cfg_set_max_threads (loop, cfg->threads);
  fuse_loop_cfg_set_idle_threads (loop, cfg->threads);
  fuse_loop_cfg_set_clone_fd (loop, cfg->clone_fd);
  r = fuse_session_loop_mt (se, loop);
  fuse_loop_cfg_destroy (loop);
  return r == 0 || r == SIGINT || r == SIGTERM || r == SIGHUP ? 0 : 1;
}

/* Refuses -o options libfuse does not take as a usage error (status 2),
 * before the device is opened and anything is mounted: libfuse would
 * only say so once connected, and the failure would look like one. */
static void
check_fuse_opts (const struct config *cfg)
{
  struct fuse_args args = FUSE_ARGS_INIT (0, NULL);
  struct fuse_session *se;

  if (!cfg->fuse_opts)
    return;
  build_fuse_args (&args, cfg, cfg->readonly);
  se = fuse_session_new (&args, &vublkfs_ops, sizeof vublkfs_ops, NULL);
  fuse_opt_free_args (&args);
  if (!se)
    die (EXIT_USAGE, "invalid FUSE options '%s' (see the message above)",
         cfg->fuse_opts);
  fuse_session_destroy (se);
}

/* libfuse's messages (and ours through fuse_log) go where the rest do:
 * stderr, or syslog in the background.  FUSE's levels are syslog's. */
static void
log_fuse_message (enum fuse_log_level level, const char *fmt, va_list ap)
{
  log_formatted ((int) level, fmt, ap);
}

int
main (int argc, char **argv)
{
  struct config cfg;
  struct fuse_args args = FUSE_ARGS_INIT (0, NULL);
  struct fuse_session *se;
  struct vublkfs fs;
  struct vublk *dev;
  int r;

  program_name = "vublk-fuse";
  keep_standard_fds_open ();
  signal (SIGPIPE, SIG_IGN);
  fuse_set_log_func (log_fuse_message);
  parse_args (argc, argv, &cfg);
  check_fuse_opts (&cfg);
  keep_stderr = cfg.verbose;
  if (cfg.daemon)
    daemon_start ();
  dev = open_device_or_fail (&cfg);
  if (!daemon_release ()) {
    vublk_close (dev);
    exit (1);
  }
  init_fs (&fs, &cfg, dev);
  build_fuse_args (&args, &cfg, fs.readonly);
  se = fuse_session_new (&args, &vublkfs_ops, sizeof vublkfs_ops, &fs);
  if (!se)
    startup_fail ("invalid FUSE options '%s'",
                  cfg.fuse_opts ? cfg.fuse_opts : "");
  /* A shell starts background jobs with SIGINT ignored, and libfuse only
   * takes over signals left at their default; SIGINT and SIGTERM must
   * always unmount cleanly.  (SIGHUP stays ignored under nohup.) */
  signal (SIGINT, SIG_DFL);
  signal (SIGTERM, SIG_DFL);
  if (fuse_set_signal_handlers (se) == -1)
    startup_fail ("cannot install signal handlers");
  if (fuse_session_mount (se, cfg.mountpoint) == -1)
    startup_fail ("cannot mount %s on %s (see the FUSE message above)",
                  cfg.socket, cfg.mountpoint);
  if ((r = vublkfs_allow_shared_mmap (se)) < 0) {
    fuse_session_unmount (se);
    startup_fail ("%s: cannot set up /dev/fuse: %s", cfg.mountpoint,
                  strerror (-r));
  }
  if (cfg.pidfile && (r = write_pidfile (cfg.pidfile)) < 0) {
    fuse_session_unmount (se);
    startup_fail ("--pidfile %s: %s", cfg.pidfile, strerror (-r));
  }
  /* libfuse's loop is ready once mounted; the plugged loops report
   * after INIT. */
  if (cfg.clone_fd && !daemon_report_ready (keep_stderr))
    r = 1;                 /* the parent is gone: unmounted below */
  else
    r = serve (se, &cfg, dev);
  if (daemon_status_fd () >= 0) {
    /* -d and the session ended before answering INIT. */
    fuse_session_unmount (se);
    startup_fail ("%s: the FUSE session ended during start-up (INIT "
                  "failed; see the FUSE message above)", cfg.mountpoint);
  }

  if (daemon_parent_lost ()) {
    /* -d and the parent died before the mount was ready: undo it. */
    fuse_session_unmount (se);
    if (cfg.pidfile)
      unlink (cfg.pidfile);
    vublk_close (dev);
    exit (1);
  }

  fuse_remove_signal_handlers (se);
  /* The loops have stopped taking requests, but writes they sent may
   * still be in flight: a flush covers only those completed before it. */
  vublkfs_wait_answered (&fs);
  if (!fs.readonly && (errno = -vublk_flush (dev)) > 0) {
    log_message (VUBLK_LOG_ERROR, "flushing %s before unmount: %s",
                 cfg.socket, vublk_get_error ());
    r = 1;
  }
  fuse_session_unmount (se);
  vublk_close (dev);
  fuse_session_destroy (se);
  if (cfg.pidfile)
    unlink (cfg.pidfile);
  fuse_opt_free_args (&args);
  free (cfg.fuse_opts);
  free (cfg.mountpoint);
  free (cfg.socket);
  free (cfg.pidfile);
  return r;
}
