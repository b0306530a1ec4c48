/* replay_main — runs a fuzz target over files (the seed corpus) without
 * libFuzzer, so every build checks the corpus under its own sanitizers.
 *   fuzz_X_replay FILE|DIR...   exit 0 when every input ran */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static int
run_file (const char *path)
{
  FILE *f = fopen (path, "rb");
  uint8_t *buf;
  long len;

  if (!f || fseek (f, 0, SEEK_END) || (len = ftell (f)) < 0
      || fseek (f, 0, SEEK_SET) || !(buf = malloc (len ? len : 1))
      || fread (buf, 1, len, f) != (size_t) len) {
    fprintf (stderr, "replay: cannot read %s\n", path);
    return 1;
  }
  fclose (f);
  LLVMFuzzerTestOneInput (buf, len);
  free (buf);
  return 0;
}

int
main (int argc, char **argv)
{
  int n = 0, bad = 0;

  for (int i = 1; i < argc; i++) {
    struct stat st;
    DIR *d;
    struct dirent *e;

    if (stat (argv[i], &st) == 0 && S_ISDIR (st.st_mode) && (d = opendir (argv[i]))) {
      while ((e = readdir (d))) {
        char p[4096];
        if (e->d_name[0] == '.')
          continue;
        snprintf (p, sizeof p, "%s/%s", argv[i], e->d_name);
        bad |= run_file (p);
        n++;
      }
      closedir (d);
    }
    else {
      bad |= run_file (argv[i]);
      n++;
    }
  }
  printf ("replayed %d inputs\n", n);
  return bad || n == 0;
}
