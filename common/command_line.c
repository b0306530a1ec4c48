/* command_line.c — reading a tool's command line with getopt_long, the
 * same way in vublk's commands and in vublk-fuse: "--name value" and
 * "--name=value" (whole names only: a shortened one could pick a
 * different option than meant), "--" before operands, -h/--help,
 * -v/--verbose, and the library's device options (from its table)
 * beside the tool's own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"

/* getopt codes of the long options this file adds, and the base added
 * to a tool's own long option whose code is a letter: every long option
 * then has a code of 256 or more, which tells "a flag given a value"
 * apart from an unknown short option. */
enum { OPT_DEVICE = 1000, OPT_DEVICE_FLAG, OPT_HELP, OPT_VERBOSE,
       LETTER_BASE = 2000 };

/* The most options a tool adds of its own, and the library's at most. */
#define MAX_OWN_OPTIONS 24
#define MAX_DEVICE_OPTIONS 32

/* Dies unless the long option opts[idx] that getopt_long just returned
 * was typed whole: getopt takes any unambiguous prefix ("--queue" for
 * --queues), and options sharing a code (every device option) are never
 * ambiguous to it. */
static void
require_whole_name (const struct command_line *cl, char **argv,
                    const struct option *opt)
{
  /* The word holding the name: before the value if the value was the
   * next word. */
  const char *word = argv[optind - 1];
  size_t len;

  if (opt->has_arg == required_argument && optarg == argv[optind - 1])
    word = argv[optind - 2];
  len = strcspn (word + 2, "=");
  if (len != strlen (opt->name) || strncmp (word + 2, opt->name, len))
    die (EXIT_USAGE, "%sunknown option '%.*s' (options are written whole, "
         "e.g. --%s; try %s --help)", cl->prefix, (int) len + 2, word,
         opt->name, cl->command);
}

const char *
only_socket (const struct command_line *cl, int argc, char **argv,
             struct vublk_options *o)
{
  int first = parse_command_line (cl, argc, argv, o);
  const char *socket = first < argc ? socket_operand (argv[first]) : "";

  if (argc - first > 1)
    die (EXIT_USAGE, "%smore than one SOCKET given", cl->prefix);
  if (!*socket)
    die (EXIT_USAGE, "%sno SOCKET given (%s --help)", cl->prefix,
         cl->command);
  return socket;
}

int
parse_command_line (const struct command_line *cl, int argc, char **argv,
                    struct vublk_options *o)
{
  struct option opts[MAX_OWN_OPTIONS + MAX_DEVICE_OPTIONS + 3];
  char shortopts[64];
  char **operands;
  size_t n = 0;
  int c, idx, noperands = 0;

  for (; cl->own && cl->own[n].name; n++) {
    if (n == MAX_OWN_OPTIONS)
      abort ();   /* a tool's table outgrew this file: a build-time fact */
    opts[n] = cl->own[n];
    if (opts[n].val < 256)
      opts[n].val += LETTER_BASE;
  }
  opts[n++] = (struct option) { "help", no_argument, NULL, OPT_HELP };
  opts[n++] = (struct option) { "verbose", no_argument, NULL, OPT_VERBOSE };
  n += device_long_options (opts + n, MAX_DEVICE_OPTIONS, OPT_DEVICE,
                            OPT_DEVICE_FLAG);
  opts[n] = (struct option) { NULL, 0, NULL, 0 };
  /* ':' first: a missing value is told apart from an unknown option.
   * '+': options end at the first operand.  '-': operands come back in
   * order (code 1), so options may follow them even with
   * POSIXLY_CORRECT in the environment, which would end permuting. */
  snprintf (shortopts, sizeof shortopts, "%s:hv%s",
            cl->options_first ? "+" : "-",
            cl->short_options ? cl->short_options : "");
  operands = calloc ((size_t) argc + 1, sizeof *operands);
  if (!operands)
    die (1, "out of memory");

  opterr = 0;
  optind = 1;
  for (;;) {
    idx = -1;   /* stays -1 unless a long option was read */
    c = getopt_long (argc, argv, shortopts, opts, &idx);
    if (c == -1)
      break;

    if (idx >= 0)
      require_whole_name (cl, argv, &opts[idx]);
    switch (c) {
    case 1:
      operands[noperands++] = optarg;
      break;
    case 'h':
    case OPT_HELP:
      cl->usage (stdout);
      exit (0);
    case 'v':
    case OPT_VERBOSE:
      device_options_verbose (o);
      if (cl->option)
        cl->option (cl->opaque, 'v', NULL);
      break;
    case OPT_DEVICE_FLAG:
      vublk_options_set (o, opts[idx].name, "on");
      break;
    case OPT_DEVICE:
      if (vublk_options_set (o, opts[idx].name, optarg) != 0)
        die (EXIT_USAGE, "--%s", vublk_get_error ());
      break;
    /* optopt names a short option; for a long one, the word just read. */
    case ':':
      if (optopt > 0 && optopt < 128)
        die (EXIT_USAGE, "%soption '-%c' needs a value", cl->prefix, optopt);
      die (EXIT_USAGE, "%soption '%s' needs a value", cl->prefix,
           argv[optind - 1]);
    case '?':
      /* A long flag given a value ("--json=yes"): optopt is its code. */
      if (optopt >= 256)
        die (EXIT_USAGE, "%soption '%.*s' takes no value", cl->prefix,
             (int) strcspn (argv[optind - 1], "="), argv[optind - 1]);
      if (optopt > 0)
        die (EXIT_USAGE, "%sunknown option '-%c' (try %s --help)", cl->prefix,
             optopt, cl->command);
      die (EXIT_USAGE, "%sunknown option '%s' (try %s --help)", cl->prefix,
           argv[optind - 1], cl->command);
    default:
      cl->option (cl->opaque, c >= LETTER_BASE ? c - LETTER_BASE : c, optarg);
      break;
    }
  }
  /* Operands in order: those met among the options, then those after
   * "--" (or after the first, with options_first), at the end of argv. */
  while (optind < argc)
    operands[noperands++] = argv[optind++];
  memcpy (argv + argc - noperands, operands, noperands * sizeof *operands);
  free (operands);
  return argc - noperands;
}
