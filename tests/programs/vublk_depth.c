/* vublk_depth — keeps QD requests in flight on one driven queue, each
 * completion callback submitting its job's next request, and checks
 * every byte: the shape of `vublk bench`, with data.
 *
 *   vublk_depth SOCKET [--poll] [--qd N] [--rounds N] [--ring R]
 *
 * Job j owns the 4 KiB block j.  Each round writes a pattern naming the
 * job and the round, reads the block back and compares it.  Busy polling
 * at depth (--poll, QD >= 16) the library announces a pass's
 * resubmissions together: a batch that is never announced shows up here
 * as requests that never complete (30 s bound), a wrong one as bad data
 * or a protocol error.  Exit 0 only if every round of every job
 * matched.  Whether a pass really was batched is not visible from here
 * (bench/core measures that); this checks that nothing is lost.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vublk.h"

#define BLOCK 4096u
#define MAX_QD 256

struct job {
  struct vublk_tq *tq;
  uint8_t *buf;                 /* in the device's shared memory */
  unsigned index, round;        /* its block; the round being checked */
  unsigned rounds;              /* rounds to run */
  bool reading;                 /* the request in flight is the read back */
  int *live;                    /* jobs still running (main's count) */
  int *failed;                  /* checks failed so far (main's count) */
};

/* The byte at offset i of job's block in round round. */
static uint8_t
pattern (unsigned job, unsigned round, unsigned i)
{
  return (uint8_t) (job * 131 + round * 7 + i);
}

static void job_done (void *opaque, int result);

/* Submits the job's next request: the write of its round, or the read
 * that checks it.  Returns 0 or -1 (reported). */
static int
submit_next (struct job *j)
{
  struct vublk_io io = {
    .op = j->reading ? VUBLK_OP_READ : VUBLK_OP_WRITE,
    .offset = (uint64_t) j->index * BLOCK, .buf = j->buf, .len = BLOCK,
    .cb = job_done, .opaque = j,
  };

  if (j->reading)
    memset (j->buf, 0, BLOCK);
  else
    for (unsigned i = 0; i < BLOCK; i++)
      j->buf[i] = pattern (j->index, j->round, i);
  if (vublk_tq_submit (j->tq, &io) < 0) {
    fprintf (stderr, "vublk_depth: job %u: submit: %s\n", j->index,
             vublk_get_error ());
    return -1;
  }
  return 0;
}

/* Checks what the job's read brought back; returns true if it matched. */
static bool
block_matches (const struct job *j)
{
  for (unsigned i = 0; i < BLOCK; i++)
    if (j->buf[i] != pattern (j->index, j->round, i)) {
      fprintf (stderr, "vublk_depth: job %u round %u: byte %u is 0x%02x, "
               "wrote 0x%02x\n", j->index, j->round, i, j->buf[i],
               pattern (j->index, j->round, i));
      return false;
    }
  return true;
}

/* The completion callback of job opaque's request: counts a failure or
 * a mismatch, ends the job after its last round or on any failure (it
 * leaves *live then), and otherwise submits its next request. */
static void
job_done (void *opaque, int result)
{
  struct job *j = opaque;

  if (result) {
    fprintf (stderr, "vublk_depth: job %u round %u: %s failed: %s\n",
             j->index, j->round, j->reading ? "read" : "write",
             strerror (-result));
    ++*j->failed;
  }
  else if (j->reading && !block_matches (j))
    ++*j->failed;
  if (*j->failed) {
    --*j->live;
    return;
  }
  if (j->reading && ++j->round == j->rounds) {
    --*j->live;
    return;
  }
  j->reading = !j->reading;
  if (submit_next (j) < 0) {
    ++*j->failed;
    --*j->live;
  }
}

int
main (int argc, char **argv)
{
  struct vublk_options opts;
  struct job jobs[MAX_QD];
  const char *sock = NULL;
  unsigned qd = 32, rounds = 300;
  int live = 0, failed = 0;

  vublk_options_init (&opts);
  for (int i = 1; i < argc; i++) {
    if (!strcmp (argv[i], "--poll"))
      opts.poll = true;
    else if (!strcmp (argv[i], "--qd") && i + 1 < argc)
      qd = (unsigned) atoi (argv[++i]);
    else if (!strcmp (argv[i], "--rounds") && i + 1 < argc)
      rounds = (unsigned) atoi (argv[++i]);
    else if (!strcmp (argv[i], "--ring") && i + 1 < argc) {
      if (vublk_options_set (&opts, "ring", argv[++i]) < 0) {
        fprintf (stderr, "vublk_depth: %s\n", vublk_get_error ());
        return 2;
      }
    }
    else if (argv[i][0] != '-' && !sock)
      sock = argv[i];
    else
      sock = NULL, i = argc;
  }
  if (!sock || qd < 1 || qd > MAX_QD || rounds < 1) {
    fprintf (stderr, "usage: vublk_depth SOCKET [--poll] [--qd 1-%d] "
             "[--rounds N] [--ring split|packed]\n", MAX_QD);
    return 2;
  }
  struct vublk *dev = vublk_open (sock, &opts);
  struct vublk_tq *tq = dev ? vublk_tq_open (dev) : NULL;
  if (!tq) {
    fprintf (stderr, "vublk_depth: %s\n", vublk_get_error ());
    return 1;
  }
  if (vublk_get_size (dev) < (uint64_t) qd * BLOCK) {
    fprintf (stderr, "vublk_depth: device smaller than %u blocks\n", qd);
    return 1;
  }
  for (unsigned i = 0; i < qd; i++) {
    jobs[i] = (struct job) { .tq = tq, .index = i,
                             .live = &live, .failed = &failed,
                             .rounds = rounds,
                             .buf = vublk_buf_alloc (dev, BLOCK) };
    if (!jobs[i].buf || submit_next (&jobs[i]) < 0) {
      fprintf (stderr, "vublk_depth: starting job %u: %s\n", i,
               vublk_get_error ());
      return 1;
    }
    live++;
  }
  for (time_t until = time (NULL) + 30; live > 0;) {
    if (vublk_tq_process (tq, 1, 100000000) < 0) {
      fprintf (stderr, "vublk_depth: %s\n", vublk_get_error ());
      return 1;
    }
    if (time (NULL) > until) {
      fprintf (stderr, "vublk_depth: %d of %u jobs still running after "
               "30 s: requests submitted and never completed\n", live, qd);
      return 1;
    }
  }
  vublk_tq_close (tq);
  for (unsigned i = 0; i < qd; i++)
    vublk_buf_free (dev, jobs[i].buf);
  vublk_close (dev);
  if (failed)
    return 1;
  printf ("vublk_depth: %u jobs x %u rounds, %s: every block matched\n",
          qd, rounds, opts.poll ? "polling" : "sleeping");
  return 0;
}
