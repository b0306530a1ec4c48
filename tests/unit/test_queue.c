/* test_queue.c — queue.c, completion.c and replay.c against an
 * in-process device (fake_peer.c) on split rings with and without
 * indirect descriptors and on packed rings: a full ring's pending list,
 * index wrap-around with completions out of order, replay after a reset
 * in submission order, abandoned slots failing once, protocol violations
 * from the device, the completion thread, and plugs switching between
 * devices. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "fake_peer.h"

#define KiB 1024u

static struct fake_params
params (enum fake_layout layout, unsigned queue_size)
{
  return (struct fake_params) {
    .layout = layout, .queue_size = queue_size, .blk_size = 512,
    .max_transfer = 8 * KiB, .disk_bytes = 1024 * KiB,
    .pool_size = 1024 * KiB, .flush = true,
  };
}

static enum fake_layout
layout_of (void **state)
{
  return (enum fake_layout) ((uintptr_t) *state & 0xf);
}

/* True if buf holds the fresh disk's bytes of [off, off+len). */
static bool
is_pattern (const uint8_t *buf, uint64_t off, size_t len)
{
  for (size_t i = 0; i < len; i++)
    if (buf[i] != fake_pattern (off + i))
      return false;
  return true;
}

/* What a reconnect does to a queue (control.c's try_reconnect): replay
 * while reconnecting, the new backend starts on the fresh ring, then a
 * kick.  Returns queue_replay's count of failed chunks. */
static unsigned
reconnect (struct fake_env *e)
{
  unsigned failed;

  atomic_store (&e->dev->state, DEV_RECONNECTING);
  atomic_store (&e->dev->violation, false);
  failed = queue_replay (e->q, false);
  fake_peer_reset (e->peer);
  atomic_store (&e->dev->state, DEV_CONNECTED);
  queue_kick (e->q);
  return failed;
}

/* More requests than slots: the rest wait on the pending list, in order,
 * and go out one by one as slots free. */
static void
test_full_ring_waits_on_pending_list (void **state)
{
  struct fake_params p = params (layout_of (state), 8);
  struct fake_env e = fake_env_new (&p);
  unsigned nslots = e.q->nslots, n = nslots + 5;
  struct fake_done *done = calloc (n, sizeof *done);
  uint8_t (*buf)[512] = calloc (n, 512);

  assert_int_equal (nslots, p.layout == LAYOUT_SPLIT_INDIRECT ? 8 : 2);
  for (unsigned i = 0; i < n; i++)
    fake_submit (&e, VUBLK_OP_READ, 0, i * 1536, buf[i], 512, &done[i]);
  assert_int_equal (e.q->inflight, nslots);
  assert_non_null (e.q->pending_head);
  assert_int_equal (fake_peer_take (e.peer), nslots);
  assert_int_equal (fake_peer_take (e.peer), 0);
  /* One completes: exactly one more goes out, the next in line. */
  fake_peer_complete (e.peer, 1);
  fake_peer_publish (e.peer);
  assert_int_equal (queue_process (e.q, PROCESS_BUDGET), 1);
  assert_int_equal (done[1].calls, 1);
  assert_int_equal (fake_peer_take (e.peer), 1);
  assert_int_equal (e.peer->taken[nslots - 1].sector, nslots * 3);
  fake_peer_run (e.peer);
  for (unsigned i = 0; i < n; i++) {
    assert_int_equal (done[i].calls, 1);
    assert_int_equal (done[i].result, 0);
    assert_true (is_pattern (buf[i], i * 1536, 512));
  }
  /* Issued in submission order (the one completed early aside). */
  for (unsigned i = 1; i < n; i++)
    assert_int_equal (e.peer->log[i].offset, (i == 1 ? 0 : i) * 1536);
  free (done);
  free (buf);
  fake_env_free (&e);
}

/* The index wrap test's requests. */
struct wrap_req {
  uint64_t off;
  bool busy;
  uint8_t buf[512];
};

static unsigned long wrap_completed;

static void
wrap_done (void *opaque, int result)
{
  struct wrap_req *r = opaque;

  assert_int_equal (result, 0);
  assert_true (r->busy);            /* twice would find it idle */
  assert_true (is_pattern (r->buf, r->off, sizeof r->buf));
  r->busy = false;
  wrap_completed++;
}

/* 70,000 one-chunk reads through a 16-entry ring take the split indexes
 * past 65535 and a packed ring through thousands of laps; the peer
 * completes every batch backwards and holds the newest chain over to the
 * next, so slots free and refill out of order. */
static void
test_index_wrap_out_of_order (void **state)
{
  struct fake_params p = params (layout_of (state), 16);
  struct fake_env e = fake_env_new (&p);
  const unsigned long total = 70000;
  unsigned nreq = 2 * e.q->nslots;
  struct wrap_req *reqs = calloc (nreq, sizeof *reqs);
  unsigned long submitted = 0;

  wrap_completed = 0;
  while (wrap_completed < total) {
    unsigned took, keep;

    for (unsigned i = 0; i < nreq && submitted < total; i++) {
      struct wrap_req *r = &reqs[i];
      struct vublk_io io = {
        .op = VUBLK_OP_READ, .buf = r->buf, .len = sizeof r->buf,
        .cb = wrap_done, .opaque = r,
      };
      if (r->busy)
        continue;
      r->busy = true;
      r->off = io.offset = (submitted * 7919 % 2047) * 512;
      memset (r->buf, 0, sizeof r->buf);
      assert_int_equal (aio_submit_to (e.dev, e.q, &io), 0);
      submitted++;
    }
    took = fake_peer_take (e.peer);
    keep = took > 0 && e.peer->ntaken > 1 ? 1 : 0;
    while (e.peer->ntaken > keep)
      fake_peer_complete (e.peer, e.peer->ntaken - 1 - keep);
    fake_peer_publish (e.peer);
    while (queue_process (e.q, PROCESS_BUDGET) > 0)
      ;
  }
  assert_int_equal (submitted, total);
  assert_int_equal (e.peer->nserved, total);
  if (p.layout == LAYOUT_PACKED)
    assert_true (total * 3 / p.queue_size > 2);
  else
    /* The avail index went round: it is the total mod 65536. */
    assert_int_equal (e.q->ring.s.avail_idx, (uint16_t) total);
  free (reqs);
  fake_env_free (&e);
}

/* Makes slots free in an order other than their index order, so that a
 * replay placing slots by index (not submission order) shows. */
static void
scramble_free_list (struct fake_env *e)
{
  struct fake_done done[4] = { { 0 } };
  uint8_t buf[4][512];

  for (unsigned i = 0; i < 4; i++)
    fake_submit (e, VUBLK_OP_READ, 0, 0, buf[i], 512, &done[i]);
  fake_peer_run (e->peer);
  assert_int_not_equal (e->q->free_head, 0);
}

/* After a reset, every slot still in flight is placed again in
 * submission order; what the old backend completed before going away is
 * harvested, not issued again; each request completes once, right. */
static void
test_replay_in_submission_order (void **state)
{
  struct fake_params p = params (layout_of (state), 64);
  struct fake_env e = fake_env_new (&p);
  struct fake_done r1 = { 0 }, w1 = { 0 }, r2 = { 0 };
  uint8_t *rbuf = malloc (32 * KiB), *wbuf = malloc (16 * KiB), r2buf[4096];
  uint64_t want[7];
  unsigned nwant = 0;
  unsigned long before;

  scramble_free_list (&e);
  memset (wbuf, 'W', 16 * KiB);
  fake_submit (&e, VUBLK_OP_READ, 0, 0, rbuf, 32 * KiB, &r1);
  fake_submit (&e, VUBLK_OP_WRITE, 0, 256 * KiB, wbuf, 16 * KiB, &w1);
  fake_submit (&e, VUBLK_OP_READ, 0, 512 * KiB, r2buf, 4096, &r2);
  assert_int_equal (fake_peer_take (e.peer), 7);
  for (unsigned i = 0; i < 7; i++)
    if (i != 1 && i != 5)
      want[nwant++] = e.peer->taken[i].sector;
  /* The old backend finishes two chunks, then goes away. */
  fake_peer_complete (e.peer, 5);
  fake_peer_complete (e.peer, 1);
  fake_peer_publish (e.peer);
  before = e.peer->nserved;

  assert_int_equal (reconnect (&e), 0);
  assert_int_equal (fake_peer_take (e.peer), nwant);
  for (unsigned i = 0; i < nwant; i++)
    assert_int_equal (e.peer->taken[i].sector, want[i]);
  fake_peer_run (e.peer);
  assert_int_equal (e.peer->nserved, before + nwant);
  assert_int_equal (r1.calls, 1);
  assert_int_equal (w1.calls, 1);
  assert_int_equal (r2.calls, 1);
  assert_int_equal (r1.result | w1.result | r2.result, 0);
  assert_true (is_pattern (rbuf, 0, 32 * KiB));
  assert_true (is_pattern (r2buf, 512 * KiB, 4096));
  for (unsigned i = 0; i < 16 * KiB; i++)
    assert_int_equal (e.peer->disk[256 * KiB + i], 'W');
  free (rbuf);
  free (wbuf);
  fake_env_free (&e);
}

/* Slots in flight across two protocol violations are abandoned: the
 * replay fails their request with EIO exactly once and issues only the
 * others. */
static void
test_replay_fails_abandoned_after_two_violations (void **state)
{
  struct fake_params p = params (layout_of (state), 64);
  struct fake_env e = fake_env_new (&p);
  struct fake_done a = { 0 }, b = { 0 };
  uint8_t *abuf = malloc (32 * KiB), *bbuf = malloc (16 * KiB);

  fake_submit (&e, VUBLK_OP_READ, 0, 0, abuf, 32 * KiB, &a);
  assert_int_equal (fake_peer_take (e.peer), 4);
  queue_note_violation (e.q);
  fake_submit (&e, VUBLK_OP_READ, 0, 64 * KiB, bbuf, 16 * KiB, &b);
  assert_int_equal (fake_peer_take (e.peer), 2);
  queue_note_violation (e.q);

  assert_int_equal (reconnect (&e), 4);
  assert_int_equal (a.calls, 1);
  assert_int_equal (a.result, -EIO);
  assert_int_equal (b.calls, 0);
  assert_int_equal (fake_peer_take (e.peer), 2);
  assert_int_equal (e.peer->taken[0].sector, 128);
  fake_peer_run (e.peer);
  assert_int_equal (a.calls, 1);
  assert_int_equal (b.calls, 1);
  assert_int_equal (b.result, 0);
  assert_true (is_pattern (bbuf, 64 * KiB, 16 * KiB));
  free (abuf);
  free (bbuf);
  fake_env_free (&e);
}

/* A request that times out once is replayed; a second time it fails
 * with EIO, once, and nothing of it is issued again. */
static void
test_replay_fails_after_two_timeouts (void **state)
{
  struct fake_params p = params (layout_of (state), 64);
  struct fake_env e = fake_env_new (&p);
  struct fake_done a = { 0 };
  uint8_t *abuf = malloc (32 * KiB);

  fake_submit (&e, VUBLK_OP_READ, 0, 0, abuf, 32 * KiB, &a);
  assert_int_equal (fake_peer_take (e.peer), 4);
  assert_false (queue_scan_timeouts (e.q, 0));
  assert_true (queue_scan_timeouts (e.q, UINT64_MAX));
  assert_int_equal (reconnect (&e), 0);
  assert_int_equal (fake_peer_take (e.peer), 4);
  assert_int_equal (a.calls, 0);
  assert_true (queue_scan_timeouts (e.q, UINT64_MAX));
  assert_int_equal (reconnect (&e), 4);
  assert_int_equal (a.calls, 1);
  assert_int_equal (a.result, -EIO);
  assert_int_equal (fake_peer_take (e.peer), 0);
  assert_int_equal (fake_peer_run (e.peer), 0);
  assert_int_equal (a.calls, 1);
  free (abuf);
  fake_env_free (&e);
}

/* A request with chunks still waiting for a slot when its in-flight
 * chunks are abandoned issues no more and fails once. */
static void
test_abandoned_request_with_pending_chunks (void **state)
{
  struct fake_params p = params (layout_of (state), 8);
  struct fake_env e = fake_env_new (&p);
  struct fake_done a = { 0 };
  uint8_t *abuf = malloc (128 * KiB);
  unsigned nslots = e.q->nslots;

  fake_submit (&e, VUBLK_OP_READ, 0, 0, abuf, 128 * KiB, &a);
  assert_int_equal (fake_peer_take (e.peer), nslots);
  assert_non_null (e.q->pending_head);
  queue_note_violation (e.q);
  queue_note_violation (e.q);
  assert_int_equal (reconnect (&e), nslots);
  queue_process (e.q, PROCESS_BUDGET);
  assert_int_equal (a.calls, 1);
  assert_int_equal (a.result, -EIO);
  assert_int_equal (fake_peer_take (e.peer), 0);
  assert_int_equal (fake_peer_run (e.peer), 0);
  assert_int_equal (a.calls, 1);
  free (abuf);
  fake_env_free (&e);
}

/* Protocol violations the peer can commit. */
enum violation {
  V_DUPLICATE_ID,           /* a used id twice */
  V_ID_NOT_IN_FLIGHT,       /* a free slot's id */
  V_ID_OUT_OF_RANGE,        /* beyond every slot (packed: beyond num) */
  V_RUNAWAY_USED_IDX,       /* split: used idx more than num ahead */
  V_NOT_CHAIN_HEAD,         /* split without indirect: id % 3 != 0 */
};

/* The id a used entry carries for slot (as the ring numbers chains). */
static uint16_t
ring_id (const struct fake_env *e, unsigned slot)
{
  return !e->q->ring.packed && !e->q->ring.indirect ? 3 * slot : slot;
}

/* After a violation with reads x, y and z (512 bytes at 4096, 8192 and
 * 12288) submitted: the replay leaves the queue whole, and each read
 * completes exactly once, without error, with the right bytes. */
static void
replay_serves_xyz_once (struct fake_env *e, const struct fake_done *x,
                        const struct fake_done *y, const struct fake_done *z,
                        const uint8_t *xbuf, const uint8_t *ybuf,
                        const uint8_t *zbuf)
{
  queue_note_violation (e->q);
  assert_int_equal (reconnect (e), 0);
  assert_false (e->q->broken);
  fake_peer_run (e->peer);
  assert_int_equal (x->calls, 1);
  assert_int_equal (y->calls, 1);
  assert_int_equal (z->calls, 1);
  assert_int_equal (x->result | y->result | z->result, 0);
  assert_true (is_pattern (xbuf, 4096, 512));
  assert_true (is_pattern (ybuf, 8192, 512));
  assert_true (is_pattern (zbuf, 12288, 512));
}

/* The device breaks the protocol between two good completions: the good
 * one before it completes, the queue is marked broken (device flagged,
 * control thread woken, the ring not read again: a later completion is
 * ignored), and after the replay every request has completed exactly
 * once. */
static void
test_violation (void **state)
{
  enum fake_layout layout = layout_of (state);
  enum violation what = (enum violation) ((uintptr_t) *state >> 4);
  struct fake_params p = params (layout, 64);
  struct fake_env e = fake_env_new (&p);
  struct fake_done x = { 0 }, y = { 0 }, z = { 0 };
  uint8_t xbuf[512], ybuf[512], zbuf[512];
  uint16_t xid;
  uint64_t wake;

  fake_submit (&e, VUBLK_OP_READ, 0, 4096, xbuf, 512, &x);
  fake_submit (&e, VUBLK_OP_READ, 0, 8192, ybuf, 512, &y);
  fake_submit (&e, VUBLK_OP_READ, 0, 12288, zbuf, 512, &z);
  assert_int_equal (fake_peer_take (e.peer), 3);
  xid = e.peer->taken[0].id;
  assert_int_equal (xid, ring_id (&e, 0));
  if (what != V_RUNAWAY_USED_IDX)
    fake_peer_complete (e.peer, 0);           /* x, good */
  switch (what) {
  case V_DUPLICATE_ID:
    fake_peer_push_raw_used (e.peer, xid, 513, 3);
    break;
  case V_ID_NOT_IN_FLIGHT:
    fake_peer_push_raw_used (e.peer, ring_id (&e, 5), 1, 3);
    break;
  case V_ID_OUT_OF_RANGE:
    fake_peer_push_raw_used (e.peer, layout == LAYOUT_PACKED ? 64 + 1
                             : ring_id (&e, e.q->nslots), 1, 3);
    break;
  case V_RUNAWAY_USED_IDX:
    e.peer->used_idx += p.queue_size + 1;
    break;
  case V_NOT_CHAIN_HEAD:
    fake_peer_push_raw_used (e.peer, 1, 1, 3);
    break;
  }
  if (what != V_RUNAWAY_USED_IDX)
    fake_peer_complete (e.peer, 0);           /* y, good but after it */
  fake_peer_publish (e.peer);
  queue_process (e.q, PROCESS_BUDGET);

  assert_true (e.q->broken);
  assert_true (atomic_load (&e.dev->violation));
  assert_true (e.dev->violation_reason[0] != '\0');
  /* The message quotes the id as the device wrote it, not the slot. */
  if (what == V_ID_NOT_IN_FLIGHT) {
    char want[64];

    snprintf (want, sizeof want, " id %u ", ring_id (&e, 5));
    if (!strstr (e.dev->violation_reason, want)
        || !strstr (e.dev->violation_reason, "not in flight"))
      fail_msg ("'%s' lacks '%s'", e.dev->violation_reason, want);
  }
  assert_int_equal (read (e.dev->ctl_wake_fd, &wake, sizeof wake),
                    sizeof wake);
  assert_int_equal (x.calls, what == V_RUNAWAY_USED_IDX ? 0 : 1);
  assert_int_equal (y.calls, 0);
  /* Nothing more is read from the broken ring. */
  fake_peer_complete (e.peer, what == V_RUNAWAY_USED_IDX ? 2 : 0);  /* z */
  fake_peer_publish (e.peer);
  assert_int_equal (queue_process (e.q, PROCESS_BUDGET), 0);
  assert_int_equal (y.calls, 0);
  assert_int_equal (z.calls, 0);

  replay_serves_xyz_once (&e, &x, &y, &z, xbuf, ybuf, zbuf);
  fake_env_free (&e);
}

/* A duplicate used entry behind the good one, with a request waiting for
 * a slot: harvesting the good entry frees its slot, which is refilled at
 * once with the waiting request.  The duplicate must still count as a
 * violation (split rings: it was published before the refill; packed:
 * it was seen used before), not
 * complete the new request, which the device never saw. */
static void
test_duplicate_after_refill (void **state)
{
  enum fake_layout layout = layout_of (state);
  struct fake_params p = params (layout, layout == LAYOUT_SPLIT_INDIRECT ? 2 : 8);
  struct fake_env e = fake_env_new (&p);
  struct fake_done x = { 0 }, y = { 0 }, z = { 0 };
  uint8_t xbuf[512], ybuf[512], zbuf[512];
  uint16_t xid;

  assert_int_equal (e.q->nslots, 2);
  fake_submit (&e, VUBLK_OP_READ, 0, 4096, xbuf, 512, &x);
  fake_submit (&e, VUBLK_OP_READ, 0, 8192, ybuf, 512, &y);
  fake_submit (&e, VUBLK_OP_READ, 0, 12288, zbuf, 512, &z);  /* waits */
  assert_int_equal (fake_peer_take (e.peer), 2);
  xid = e.peer->taken[0].id;
  fake_peer_complete (e.peer, 0);                 /* x, good */
  fake_peer_push_raw_used (e.peer, xid, 1, 3);    /* x again */
  fake_peer_publish (e.peer);
  queue_process (e.q, PROCESS_BUDGET);

  assert_int_equal (x.calls, 1);
  assert_true (e.q->broken);
  assert_int_equal (z.calls, 0);    /* not completed for x's duplicate */

  replay_serves_xyz_once (&e, &x, &y, &z, xbuf, ybuf, zbuf);
  fake_env_free (&e);
}

static atomic_uint threaded_done;

static void
threaded_cb (void *opaque, int result)
{
  (void) opaque;
  if (result == 0)
    atomic_fetch_add (&threaded_done, 1);
}

/* With the completion thread running, the call eventfd is what wakes it:
 * the peer serves from this thread and signals, the thread harvests and
 * runs the callbacks (also of requests that waited for a slot). */
static void
test_completion_thread (void **state)
{
  struct fake_params p = params (layout_of (state), 8);
  struct fake_env e = fake_env_new (&p);
  uint8_t (*buf)[512] = calloc (40, 512);
  struct timespec start, now;

  atomic_store (&threaded_done, 0);
  assert_int_equal (queue_start_thread (e.q), 0);
  for (unsigned i = 0; i < 40; i++) {
    struct vublk_io io = {
      .op = VUBLK_OP_READ, .offset = i * 512, .buf = buf[i], .len = 512,
      .cb = threaded_cb,
    };
    assert_int_equal (aio_submit_to (e.dev, e.q, &io), 0);
  }
  clock_gettime (CLOCK_MONOTONIC, &start);
  while (atomic_load (&threaded_done) < 40) {
    pthread_mutex_lock (&e.q->lock);      /* the ring moves under it */
    fake_peer_take (e.peer);
    pthread_mutex_unlock (&e.q->lock);
    while (e.peer->ntaken)
      fake_peer_complete (e.peer, 0);
    fake_peer_publish (e.peer);
    eventfd_signal (e.q->call_fd);
    clock_gettime (CLOCK_MONOTONIC, &now);
    assert_true (now.tv_sec - start.tv_sec < 10);
    usleep (100);
  }
  queue_stop_thread (e.q);
  for (unsigned i = 0; i < 40; i++)
    assert_true (is_pattern (buf[i], i * 512, 512));
  free (buf);
  fake_env_free (&e);
}

/* One plug per thread, and no request left behind by plugging around:
 * plugging a second device announces what waits on the first, unplugging
 * a device that is not plugged leaves the plugged one alone, and plugging
 * the same device again keeps what waits counted for the unplug.  The
 * device here asks for every notification, so a kick is an announcement
 * (on packed rings the chain is visible before it: only the kick waits). */
static void
test_plug_switch_leaves_nothing_behind (void **state)
{
  struct fake_params p = params (layout_of (state), 8);
  struct fake_env a = fake_env_new (&p), b = fake_env_new (&p);
  uint8_t buf[4][512];
  struct fake_done done[4] = { 0 };

  vublk_aio_plug (a.dev);
  fake_submit (&a, VUBLK_OP_READ, 0, 0, buf[0], 512, &done[0]);
  assert_int_equal (fake_kicks (a.q), 0);            /* plugged */
  vublk_aio_plug (b.dev);
  assert_int_equal (fake_kicks (a.q), 1);            /* announced */
  fake_submit (&b, VUBLK_OP_READ, 0, 512, buf[1], 512, &done[1]);
  vublk_aio_unplug (a.dev);                          /* not a's plug: */
  fake_submit (&b, VUBLK_OP_READ, 0, 1024, buf[2], 512, &done[2]);
  assert_int_equal (fake_kicks (b.q), 0);            /* b still plugged */
  vublk_aio_plug (b.dev);                            /* again: no change */
  assert_int_equal (fake_kicks (b.q), 0);
  vublk_aio_unplug (b.dev);
  assert_int_equal (fake_kicks (b.q), 1);            /* both announced */
  /* Unplugged: a submission is announced at once. */
  fake_submit (&a, VUBLK_OP_READ, 0, 1536, buf[3], 512, &done[3]);
  assert_int_equal (fake_kicks (a.q), 1);
  assert_int_equal (fake_peer_take (a.peer), 2);
  assert_int_equal (fake_peer_take (b.peer), 2);
  for (unsigned i = 0; i < 2; i++) {
    struct fake_env *e = i ? &b : &a;

    while (e->peer->ntaken)
      fake_peer_complete (e->peer, 0);
    fake_peer_publish (e->peer);
    queue_harvest_now (e->q);
  }
  for (unsigned i = 0; i < 4; i++) {
    assert_int_equal (done[i].calls, 1);
    assert_int_equal (done[i].result, 0);
    assert_true (is_pattern (buf[i], i * 512, 512));
  }
  fake_env_free (&a);
  fake_env_free (&b);
}

#define ON(t, layout, name, extra) \
  { #t "/" name, t, NULL, NULL, \
    (void *) (uintptr_t) ((layout) | (extra) << 4) }
#define ON_EVERY_LAYOUT(t) \
  ON (t, LAYOUT_SPLIT_INDIRECT, "split-indirect", 0), \
  ON (t, LAYOUT_SPLIT_TRIPLE, "split", 0), \
  ON (t, LAYOUT_PACKED, "packed", 0)
#define VIOLATION_ON_EVERY_LAYOUT(v) \
  ON (test_violation, LAYOUT_SPLIT_INDIRECT, #v "/split-indirect", v), \
  ON (test_violation, LAYOUT_SPLIT_TRIPLE, #v "/split", v), \
  ON (test_violation, LAYOUT_PACKED, #v "/packed", v)

int
main (void)
{
  const struct CMUnitTest tests[] = {
    ON_EVERY_LAYOUT (test_full_ring_waits_on_pending_list),
    ON_EVERY_LAYOUT (test_index_wrap_out_of_order),
    ON_EVERY_LAYOUT (test_replay_in_submission_order),
    ON_EVERY_LAYOUT (test_replay_fails_abandoned_after_two_violations),
    ON_EVERY_LAYOUT (test_replay_fails_after_two_timeouts),
    ON_EVERY_LAYOUT (test_abandoned_request_with_pending_chunks),
    VIOLATION_ON_EVERY_LAYOUT (V_DUPLICATE_ID),
    VIOLATION_ON_EVERY_LAYOUT (V_ID_NOT_IN_FLIGHT),
    VIOLATION_ON_EVERY_LAYOUT (V_ID_OUT_OF_RANGE),
    ON (test_violation, LAYOUT_SPLIT_INDIRECT,
        "V_RUNAWAY_USED_IDX/split-indirect", V_RUNAWAY_USED_IDX),
    ON (test_violation, LAYOUT_SPLIT_TRIPLE, "V_RUNAWAY_USED_IDX/split",
        V_RUNAWAY_USED_IDX),
    ON (test_violation, LAYOUT_SPLIT_TRIPLE, "V_NOT_CHAIN_HEAD/split",
        V_NOT_CHAIN_HEAD),
    ON (test_duplicate_after_refill, LAYOUT_SPLIT_INDIRECT,
        "split-indirect", 0),
    ON (test_duplicate_after_refill, LAYOUT_SPLIT_TRIPLE, "split", 0),
    ON (test_duplicate_after_refill, LAYOUT_PACKED, "packed", 0),
    ON_EVERY_LAYOUT (test_completion_thread),
    ON_EVERY_LAYOUT (test_plug_switch_leaves_nothing_behind),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
