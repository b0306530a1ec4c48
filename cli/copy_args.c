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

bool
parse_copy_args (int argc, char **argv, struct copy_args *a)
{
  unsigned nspec = 0;

  *a = (struct copy_args) { .show_progress = false };
  device_options_init (&a->o);
  for (int i = 1; i < argc; i++) {
    if (!strcmp (argv[i], "--help")) {
      usage (stdout);
      return false;
    }
    if (!strcmp (argv[i], "-p") || !strcmp (argv[i], "--progress"))
      a->show_progress = true;
    else if (!strcmp (argv[i], "--allocated"))
      a->allocated = true;
    else if (parse_device_flag (&a->o, argv[i]))
      ;
    else if (argv[i][0] == '-' && argv[i][1] == '-'
             && parse_device_option (&a->o, argv[i],
                                     i + 1 < argc ? argv[i + 1] : NULL))
      i++;
    else if (argv[i][0] == '-' && argv[i][1])
      die (EXIT_USAGE, "copy: unknown option '%s'", argv[i]);
    else if (nspec == 2)
      die (EXIT_USAGE, "copy: more than SRC and DST given");
    else
      a->spec[nspec++] = argv[i];
  }
  if (nspec != 2)
    die (EXIT_USAGE, "copy: need SRC and DST (vublk copy --help)");
  a->show_progress = a->show_progress && isatty (STDERR_FILENO);
  return true;
}
