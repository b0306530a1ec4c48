/* copy_args.c — the command line of `vublk copy`: its options, its help
 * and SRC and DST. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "copy.h"

/* Prints vublk copy's help, with the device options, to f. */
static void
usage (FILE *f)
{
  fprintf (f, "Usage: vublk copy [-p] [--allocated] [OPTIONS] SRC DST\n"
           "Copies SRC to DST; each is a file, - (stdin/stdout) or "
           "vhost-user:SOCKET.\nThe whole source is copied; a device "
           "destination must be large enough.\nCtrl-C stops it after "
           "writing what was read, and says how far it got.\n\n"
           "  -p, --progress           show progress on a terminal\n"
           "      --allocated          write chunks of zeroes out in full: "
           "no holes in a\n"
           "                           file, no deallocation on a device\n%s",
           device_options_help ());
}

enum { OPT_ALLOCATED = 256 };
static const struct option own[] = {
  { "progress", no_argument, NULL, 'p' },
  { "allocated", no_argument, NULL, OPT_ALLOCATED },
  { NULL, 0, NULL, 0 },
};

/* Takes copy's own options (parse_command_line) into the copy_args at
 * opaque. */
static void
take_option (void *opaque, int code, const char *value)
{
  struct copy_args *a = opaque;

  (void) value;
  if (code == 'p')
    a->show_progress = true;
  else if (code == OPT_ALLOCATED)
    a->allocated = true;
}

void
parse_copy_args (int argc, char **argv, struct copy_args *a)
{
  int first;

  *a = (struct copy_args) { .show_progress = false };
  device_options_init (&a->o);
  first = parse_command_line (&(struct command_line) {
      .command = "vublk copy", .prefix = "copy: ", .own = own,
      .short_options = "p", .usage = usage, .option = take_option,
      .opaque = a,
    }, argc, argv, &a->o);
  if (argc - first > 2)
    die (EXIT_USAGE, "copy: more than SRC and DST given");
  if (argc - first != 2)
    die (EXIT_USAGE, "copy: need SRC and DST (vublk copy --help)");
  a->spec[0] = argv[first];
  a->spec[1] = argv[first + 1];
  for (int i = 0; i < 2; i++)
    if (!*a->spec[i])
      die (EXIT_USAGE, "copy: %s is empty (a file, - or vhost-user:SOCKET)",
           i ? "DST" : "SRC");
  a->show_progress = a->show_progress && isatty (STDERR_FILENO);
}
