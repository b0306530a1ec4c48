/* cli.h — what the vublk subcommands share: strict option parsing and the
 * common device options. */
#ifndef VUBLK_CLI_H
#define VUBLK_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend.h"

int cmd_info (int argc, char **argv);
int cmd_copy (int argc, char **argv);
int cmd_bench (int argc, char **argv);

#endif
