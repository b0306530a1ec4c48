/* command_line.c — reading a tool's command line with getopt_long, the
 * same way in vublk's commands and in vublk-fuse: "--name value" and
 * "--name=value", "--" before operands, -h/--help, -v/--verbose, and the
 * library's device options (from its table) beside the tool's own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"

enum { OPT_DEVICE = 1000, OPT_DEVICE_FLAG, OPT_HELP, OPT_VERBOSE };

/* The most options a tool adds of its own, and the library's at most. */
#define MAX_OWN_OPTIONS 24
#define MAX_DEVICE_OPTIONS 32

int
parse_command_line (const struct command_line *cl, int argc, char **argv,
                    struct vublk_options *o)
{
  struct option opts[MAX_OWN_OPTIONS + MAX_DEVICE_OPTIONS + 3];
  char shortopts[64];
  size_t n = 0;
  int c, idx;

  for (; cl->own && cl->own[n].name; n++) {
    if (n == MAX_OWN_OPTIONS)
      abort ();   /* a tool's table outgrew this file: a build-time fact */
    opts[n] = cl->own[n];
  }
  opts[n++] = (struct option) { "help", no_argument, NULL, OPT_HELP };
  opts[n++] = (struct option) { "verbose", no_argument, NULL, OPT_VERBOSE };
  n += device_long_options (opts + n, MAX_DEVICE_OPTIONS, OPT_DEVICE,
                            OPT_DEVICE_FLAG);
  opts[n] = (struct option) { NULL, 0, NULL, 0 };
  /* ':' first: a missing value is told apart from an unknown option; '+'
   * when the tool wants options before its operands only. */
  snprintf (shortopts, sizeof shortopts, "%s:hv%s",
            cl->options_first ? "+" : "", cl->short_options ? cl->short_options : "");

  opterr = 0;
  optind = 1;
  while ((c = getopt_long (argc, argv, shortopts, opts, &idx)) != -1) {
    char name[64];

    switch (c) {
    case 'h':
    case OPT_HELP:
      cl->usage (stdout);
      exit (0);
    case 'v':
    case OPT_VERBOSE:
      parse_device_flag (o, "--verbose");
      if (cl->option)
        cl->option (cl->opaque, 'v', NULL);
      break;
    case OPT_DEVICE_FLAG:
      snprintf (name, sizeof name, "--%s", opts[idx].name);
      parse_device_flag (o, name);
      break;
    case OPT_DEVICE:
      snprintf (name, sizeof name, "--%s", opts[idx].name);
      parse_device_option (o, name, optarg);
      break;
    /* optopt names a short option; for a long one, the word just read. */
    case ':':
      if (optopt > 0 && optopt < 128)
        die (EXIT_USAGE, "%soption '-%c' needs a value", cl->prefix, optopt);
      die (EXIT_USAGE, "%soption '%s' needs a value", cl->prefix,
           argv[optind - 1]);
    case '?':
      /* A known flag given a value ("--json=yes"): getopt sets optopt to
       * its code; an unknown long option leaves it 0. */
      if (optopt && !strncmp (argv[optind - 1], "--", 2)
          && strchr (argv[optind - 1], '='))
        die (EXIT_USAGE, "%soption '%.*s' takes no value", cl->prefix,
             (int) strcspn (argv[optind - 1], "="), argv[optind - 1]);
      if (optopt > 0 && optopt < 128)
        die (EXIT_USAGE, "%sunknown option '-%c' (try %s --help)", cl->prefix,
             optopt, cl->command);
      die (EXIT_USAGE, "%sunknown option '%s' (try %s --help)", cl->prefix,
           argv[optind - 1], cl->command);
    default:
      cl->option (cl->opaque, c, optarg);
      break;
    }
  }
  return optind;
}
