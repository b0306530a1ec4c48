/* main.c — `vublk` dispatches to its subcommands.
 * Exit status: 0 success, 1 runtime error, 2 usage error. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void
usage (FILE *f)
{
  fprintf (f,
    "Usage: vublk COMMAND [OPTIONS] ...\n"
    "Reach a vhost-user-blk device (qemu-storage-daemon, SPDK) from the "
    "command line.\n\n"
    "Commands:\n"
    "  info [--json] SOCKET      size, block sizes, limits, features, serial\n"
    "  copy [-p] SRC DST         copy between files, - and vhost-user:SOCKET\n"
    "  bench [OPTIONS] SOCKET    measure IOPS, throughput and latency\n\n"
    "  vublk COMMAND --help      options of a command\n"
    "  vublk --version           versions of vublk and libvublk\n\n"
    "Exit status: 0 success, 1 runtime error, 2 usage error.\n");
}

/* A command's exit status, made 1 if what it printed could not all be
 * written (a full disk, a closed pipe): exit 0 means the output is there. */
static int
with_output_written (int status)
{
  if (fflush (stdout) == 0 && !ferror (stdout))
    return status;
  fprintf (stderr, "vublk: writing standard output: %s\n", strerror (errno));
  return status ? status : 1;
}

int
main (int argc, char **argv)
{
  keep_standard_fds_open ();
  if (argc < 2) {
    usage (stderr);
    return EXIT_USAGE;
  }
  if (!strcmp (argv[1], "--help") || !strcmp (argv[1], "-h")) {
    usage (stdout);
    return with_output_written (0);
  }
  if (!strcmp (argv[1], "--version") || !strcmp (argv[1], "-V")) {
    printf ("vublk %s\nlibvublk %s\n", VUBLK_CLI_VERSION, vublk_version ());
    return with_output_written (0);
  }
  if (!strcmp (argv[1], "info"))
    return with_output_written (cmd_info (argc - 1, argv + 1));
  if (!strcmp (argv[1], "copy"))
    return with_output_written (cmd_copy (argc - 1, argv + 1));
  if (!strcmp (argv[1], "bench"))
    return with_output_written (cmd_bench (argc - 1, argv + 1));
  die (EXIT_USAGE, "unknown command '%s' (try vublk --help)", argv[1]);
}
