/* test_request.c — request.c through the queue against an in-process
 * device (fake_peer.c), on split rings with and without indirect
 * descriptors and on packed rings: splitting by max_transfer, bounce and
 * zero-copy data, the RMW phases of unaligned writes and write-zeroes,
 * the FUA flush, the write range lock ordering overlapping writes, error
 * status, GET_ID, callback-less completions and pool shortage. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fake_peer.h"

#define KiB 1024u

/* The defaults every test starts from; layout from the cmocka state. */
static struct fake_params
params (void **state)
{
  return (struct fake_params) {
    .layout = (enum fake_layout) (uintptr_t) *state,
    .queue_size = 64, .blk_size = 512, .max_transfer = 8 * KiB,
    .disk_bytes = 1024 * KiB, .pool_size = 1024 * KiB, .flush = true,
  };
}


/* True if buf holds the fresh disk's bytes of [off, off+len). */
static void
assert_pattern (const uint8_t *buf, uint64_t off, size_t len)
{
  for (size_t i = 0; i < len; i++)
    if (buf[i] != fake_pattern (off + i))
      fail_msg ("byte %zu (offset %llu) is 0x%02x, not 0x%02x", i,
                (unsigned long long) (off + i), buf[i],
                fake_pattern (off + i));
}

/* The peer's disk equals the fresh pattern outside [from, to) and c
 * inside it. */
static void
assert_disk (const struct fake_peer *peer, uint64_t from, uint64_t to,
             int c)
{
  for (uint64_t i = 0; i < peer->disk_bytes; i++) {
    uint8_t want = i >= from && i < to ? (uint8_t) c : fake_pattern (i);
    if (peer->disk[i] != want)
      fail_msg ("disk byte %llu is 0x%02x, not 0x%02x",
                (unsigned long long) i, peer->disk[i], want);
  }
}

/* A 100 KiB read with max_transfer 8 KiB is 13 chunks, contiguous,
 * none over the limit, and the bytes arrive where they belong. */
static void
test_read_is_split (void **state)
{
  struct fake_params p = params (state);
  struct fake_env e = fake_env_new (&p);
  struct fake_done done = { 0 };
  size_t len = 100 * KiB;
  uint8_t *buf = malloc (len);

  fake_submit (&e, VUBLK_OP_READ, 0, 4096, buf, len, &done);
  assert_int_equal (fake_peer_run (e.peer), 13);
  assert_int_equal (done.calls, 1);
  assert_int_equal (done.result, 0);
  for (unsigned i = 0; i < 13; i++) {
    assert_int_equal (e.peer->log[i].type, VIRTIO_BLK_T_IN);
    assert_int_equal (e.peer->log[i].offset, 4096 + i * 8 * KiB);
    assert_int_equal (e.peer->log[i].len, i < 12 ? 8 * KiB : 4 * KiB);
  }
  assert_pattern (buf, 4096, len);
  free (buf);
  fake_env_free (&e);
}

/* Unaligned reads bounce: the caller gets exactly its bytes, none
 * around them, even at 4 KiB blocks. */
static void
test_unaligned_read (void **state)
{
  struct fake_params p = params (state);
  struct fake_env e;
  struct fake_done done = { 0 };
  size_t len = 100 * KiB + 3;
  uint8_t *buf = malloc (len + 2);

  p.blk_size = 4096;
  e = fake_env_new (&p);
  memset (buf, 0xee, len + 2);
  fake_submit (&e, VUBLK_OP_READ, 0, 100, buf + 1, len, &done);
  /* [0, 106499) aligned out is 104 KiB: 13 chunks of 8 KiB. */
  assert_int_equal (fake_peer_run (e.peer), 13);
  assert_int_equal (done.calls, 1);
  assert_int_equal (done.result, 0);
  assert_pattern (buf + 1, 100, len);
  assert_int_equal (buf[0], 0xee);
  assert_int_equal (buf[len + 1], 0xee);
  free (buf);
  fake_env_free (&e);
}

/* An aligned buffer from the shared pool goes to the device in place:
 * each chunk's data descriptor points into the caller's buffer. */
static void
test_zero_copy_read (void **state)
{
  struct fake_params p = params (state);
  struct fake_env e = fake_env_new (&p);
  struct fake_done done = { 0 };
  size_t len = 32 * KiB;
  uint8_t *buf = vublk_buf_alloc (e.dev, len);
  unsigned pages;

  assert_non_null (buf);
  pages = e.dev->mem.pool.used_pages;
  fake_submit (&e, VUBLK_OP_READ, 0, 8192, buf, len, &done);
  assert_int_equal (fake_peer_take (e.peer), 4);
  assert_int_equal (e.dev->mem.pool.used_pages, pages);   /* no bounce */
  for (unsigned i = 0; i < 4; i++)
    assert_ptr_equal ((void *) (uintptr_t) e.peer->taken[i].data.addr,
                      buf + i * 8 * KiB);
  fake_peer_run (e.peer);
  assert_int_equal (done.calls, 1);
  assert_pattern (buf, 8192, len);
  vublk_buf_free (e.dev, buf);
  fake_env_free (&e);
}

/* A split write lands whole and touches nothing else. */
static void
test_write_is_split (void **state)
{
  struct fake_params p = params (state);
  struct fake_env e = fake_env_new (&p);
  struct fake_done done = { 0 };
  size_t len = 100 * KiB;
  uint8_t *buf = malloc (len);

  memset (buf, 'W', len);
  fake_submit (&e, VUBLK_OP_WRITE, 0, 65536, buf, len, &done);
  assert_int_equal (fake_peer_run (e.peer), 13);
  assert_int_equal (done.calls, 1);
  assert_int_equal (done.result, 0);
  for (unsigned i = 0; i < 13; i++)
    assert_int_equal (e.peer->log[i].type, VIRTIO_BLK_T_OUT);
  assert_int_equal (e.peer->flushes, 0);
  assert_disk (e.peer, 65536, 65536 + len, 'W');
  free (buf);
  fake_env_free (&e);
}

/* Harvests what the peer completes now (taken chains in order). */
static void
complete_taken (struct fake_env *e)
{
  while (e->peer->ntaken)
    fake_peer_complete (e->peer, 0);
  fake_peer_publish (e->peer);
  queue_process (e->q, PROCESS_BUDGET);
}

/* An unaligned write reads both edge blocks first, and only once both
 * are back writes the merged blocks; the bytes around the caller's
 * survive. */
static void
test_rmw_phases (void **state)
{
  struct fake_params p = params (state);
  struct fake_env e = fake_env_new (&p);
  struct fake_done done = { 0 };
  uint8_t buf[100];

  memset (buf, 'A', sizeof buf);
  fake_submit (&e, VUBLK_OP_WRITE, 0, 1000, buf, sizeof buf, &done);
  /* Phase 1: the two edge reads and nothing else. */
  assert_int_equal (fake_peer_take (e.peer), 2);
  assert_int_equal (e.peer->taken[0].type, VIRTIO_BLK_T_IN);
  assert_int_equal (e.peer->taken[0].sector, 1);
  assert_int_equal (e.peer->taken[1].type, VIRTIO_BLK_T_IN);
  assert_int_equal (e.peer->taken[1].sector, 2);
  /* One edge back: still nothing written. */
  fake_peer_complete (e.peer, 1);
  fake_peer_publish (e.peer);
  queue_process (e.q, PROCESS_BUDGET);
  assert_int_equal (fake_peer_take (e.peer), 0);
  complete_taken (&e);
  /* Phase 2: one write of both blocks. */
  assert_int_equal (fake_peer_take (e.peer), 1);
  assert_int_equal (e.peer->taken[0].type, VIRTIO_BLK_T_OUT);
  assert_int_equal (e.peer->taken[0].sector, 1);
  assert_int_equal (e.peer->taken[0].data.len, 1024);
  assert_int_equal (done.calls, 0);
  complete_taken (&e);
  assert_int_equal (done.calls, 1);
  assert_int_equal (done.result, 0);
  assert_int_equal (fake_peer_take (e.peer), 0);
  assert_int_equal (e.peer->flushes, 0);
  assert_disk (e.peer, 1000, 1100, 'A');
  fake_env_free (&e);
}

/* Inside one block: one edge read, not two. 4 KiB blocks. */
static void
test_rmw_one_block (void **state)
{
  struct fake_params p = params (state);
  struct fake_env e;
  struct fake_done done = { 0 };
  uint8_t buf[10];

  p.blk_size = 4096;
  e = fake_env_new (&p);
  memset (buf, 'b', sizeof buf);
  fake_submit (&e, VUBLK_OP_WRITE, 0, 4096 + 600, buf, sizeof buf, &done);
  assert_int_equal (fake_peer_run (e.peer), 2);
  assert_int_equal (e.peer->log[0].type, VIRTIO_BLK_T_IN);
  assert_int_equal (e.peer->log[0].offset, 4096);
  assert_int_equal (e.peer->log[0].len, 4096);
  assert_int_equal (e.peer->log[1].type, VIRTIO_BLK_T_OUT);
  assert_int_equal (e.peer->log[1].len, 4096);
  assert_int_equal (done.calls, 1);
  assert_disk (e.peer, 4096 + 600, 4096 + 610, 'b');
  fake_env_free (&e);
}

/* FUA with FLUSH negotiated: edge reads, write, then a flush, and the
 * caller hears only after the flush. */
static void
test_fua_adds_flush (void **state)
{
  struct fake_params p = params (state);
  struct fake_env e = fake_env_new (&p);
  struct fake_done done = { 0 };
  uint8_t buf[700];

  memset (buf, 'F', sizeof buf);
  fake_submit (&e, VUBLK_OP_WRITE, VUBLK_F_FUA, 300, buf, sizeof buf, &done);
  assert_int_equal (fake_peer_take (e.peer), 2);      /* edges */
  complete_taken (&e);
  assert_int_equal (fake_peer_take (e.peer), 1);      /* write */
  assert_int_equal (e.peer->taken[0].type, VIRTIO_BLK_T_OUT);
  complete_taken (&e);
  assert_int_equal (done.calls, 0);
  assert_int_equal (fake_peer_take (e.peer), 1);      /* flush */
  assert_int_equal (e.peer->taken[0].type, VIRTIO_BLK_T_FLUSH);
  assert_int_equal (done.calls, 0);
  complete_taken (&e);
  assert_int_equal (done.calls, 1);
  assert_int_equal (done.result, 0);
  assert_int_equal (e.peer->flushes, 1);
  assert_disk (e.peer, 300, 1000, 'F');
  fake_env_free (&e);
}

/* Without FLUSH negotiated, FUA needs nothing more (no volatile cache). */
static void
test_fua_without_flush_feature (void **state)
{
  struct fake_params p = params (state);
  struct fake_env e;
  struct fake_done done = { 0 };
  uint8_t buf[4096];

  p.flush = false;
  e = fake_env_new (&p);
  memset (buf, 'G', sizeof buf);
  fake_submit (&e, VUBLK_OP_WRITE, VUBLK_F_FUA, 8192, buf, sizeof buf, &done);
  assert_int_equal (fake_peer_run (e.peer), 1);
  assert_int_equal (e.peer->flushes, 0);
  assert_int_equal (done.calls, 1);
  assert_disk (e.peer, 8192, 8192 + 4096, 'G');
  fake_env_free (&e);
}

/* Unaligned write-zeroes: edges read, edges written merged, the inside
 * as WRITE_ZEROES segments. */
static void
test_unaligned_write_zeroes (void **state)
{
  struct fake_params p = params (state);
  struct fake_env e = fake_env_new (&p);
  struct fake_done done = { 0 };
  unsigned in = 0, out = 0, zero = 0;

  fake_submit (&e, VUBLK_OP_WRITE_ZEROES, 0, 100, NULL, 100000, &done);
  fake_peer_run (e.peer);
  for (unsigned i = 0; i < e.peer->nserved; i++) {
    switch (e.peer->log[i].type) {
    case VIRTIO_BLK_T_IN: in++; assert_int_equal (out + zero, 0); break;
    case VIRTIO_BLK_T_OUT: out++; break;
    case VIRTIO_BLK_T_WRITE_ZEROES:
      zero++;
      assert_true (e.peer->log[i].len <= 4 * p.max_transfer);
      break;
    default: fail ();
    }
  }
  assert_int_equal (in, 2);
  assert_int_equal (out, 2);
  assert_true (zero >= 1);
  assert_int_equal (done.calls, 1);
  assert_int_equal (done.result, 0);
  assert_disk (e.peer, 100, 100100, 0);
  fake_env_free (&e);
}

/* Two overlapping unaligned writes submitted back to back apply in
 * order: the second issues nothing until the first completed; a write
 * elsewhere is not held up; a third behind the second comes last. */
static void
test_range_lock_orders_overlapping_writes (void **state)
{
  struct fake_params p = params (state);
  struct fake_env e = fake_env_new (&p);
  struct fake_done d1 = { 0 }, d2 = { 0 }, d3 = { 0 }, d4 = { 0 };
  uint8_t a[100], b[100], c[100], d[60];

  memset (a, 'A', sizeof a);
  memset (b, 'B', sizeof b);
  memset (c, 'C', sizeof c);
  memset (d, 'D', sizeof d);
  /* Blocks 1-2, block 2, block 16, block 2. */
  fake_submit (&e, VUBLK_OP_WRITE, 0, 1000, a, sizeof a, &d1);
  fake_submit (&e, VUBLK_OP_WRITE, 0, 1050, b, sizeof b, &d2);
  fake_submit (&e, VUBLK_OP_WRITE, 0, 8192 + 5, c, sizeof c, &d3);
  fake_submit (&e, VUBLK_OP_WRITE, 0, 1120, d, sizeof d, &d4);
  /* W1's two edge reads and W3's one; W2 and W4 wait for the lock. */
  assert_int_equal (fake_peer_take (e.peer), 3);
  assert_int_equal (e.peer->taken[2].sector, 16);
  /* Serve in reverse (the peer is free to): W3 finishes first. */
  while (e.peer->ntaken)
    fake_peer_complete (e.peer, e.peer->ntaken - 1);
  fake_peer_publish (e.peer);
  queue_process (e.q, PROCESS_BUDGET);
  assert_int_equal (fake_peer_take (e.peer), 2);   /* W1's and W3's writes */
  complete_taken (&e);
  assert_int_equal (d1.calls, 1);
  assert_int_equal (d3.calls, 1);
  assert_int_equal (d2.calls, 0);
  fake_peer_run (e.peer);
  assert_int_equal (d2.calls, 1);
  assert_int_equal (d4.calls, 1);
  assert_true (d1.order < d2.order);
  assert_true (d2.order < d4.order);
  for (unsigned i = 0; i < 1000; i++)
    assert_int_equal (e.peer->disk[i], fake_pattern (i));
  for (unsigned i = 1000; i < 1050; i++)
    assert_int_equal (e.peer->disk[i], 'A');
  for (unsigned i = 1050; i < 1120; i++)
    assert_int_equal (e.peer->disk[i], 'B');
  for (unsigned i = 1120; i < 1180; i++)
    assert_int_equal (e.peer->disk[i], 'D');
  for (unsigned i = 1180; i < 8192 + 5; i++)
    assert_int_equal (e.peer->disk[i], fake_pattern (i));
  for (unsigned i = 8192 + 5; i < 8192 + 105; i++)
    assert_int_equal (e.peer->disk[i], 'C');
  fake_env_free (&e);
}

/* A chunk with an error status fails the whole request, once. */
static void
test_error_status_fails_request_once (void **state)
{
  struct fake_params p = params (state);
  struct fake_env e = fake_env_new (&p);
  struct fake_done done = { 0 };
  uint8_t *buf = malloc (32 * KiB);

  /* Past the peer's disk (aio_submit_to does not validate): the third
   * and fourth chunks get IOERR. */
  fake_submit (&e, VUBLK_OP_READ, 0, p.disk_bytes - 16 * KiB, buf, 32 * KiB,
          &done);
  fake_peer_run (e.peer);
  assert_int_equal (done.calls, 1);
  assert_int_equal (done.result, -EIO);
  free (buf);
  fake_env_free (&e);
}

/* GET_ID copies the device's string, NUL ended, into a short buffer. */
static void
test_get_id (void **state)
{
  struct fake_params p = params (state);
  struct fake_env e = fake_env_new (&p);
  struct fake_done done = { 0 };
  char id[6];

  memset (id, 'x', sizeof id);
  fake_submit (&e, VUBLK_OP_GET_ID, 0, 0, id, sizeof id, &done);
  fake_peer_run (e.peer);
  assert_int_equal (done.calls, 1);
  assert_int_equal (done.result, 0);
  assert_string_equal (id, "fake-");
  fake_env_free (&e);
}

/* Without a callback the completion goes to the harvest queue, once. */
static void
test_callback_less_completion (void **state)
{
  struct fake_params p = params (state);
  struct fake_env e = fake_env_new (&p);
  struct vublk_completion out[4];
  uint8_t buf[512];
  struct vublk_io io = {
    .op = VUBLK_OP_READ, .offset = 512, .buf = buf, .len = sizeof buf,
    .user_data = 42,
  };

  assert_int_equal (aio_submit_to (e.dev, e.q, &io), 0);
  assert_int_equal (vublk_aio_harvest (e.dev, out, 4), 0);
  fake_peer_run (e.peer);
  assert_int_equal (vublk_aio_harvest (e.dev, out, 4), 1);
  assert_int_equal (out[0].user_data, 42);
  assert_int_equal (out[0].result, 0);
  assert_int_equal (vublk_aio_harvest (e.dev, out, 4), 0);
  assert_pattern (buf, 512, sizeof buf);
  fake_env_free (&e);
}

/* With pool room for one bounce chunk, a split unaligned read goes one
 * chunk at a time and still completes right. */
static void
test_pool_shortage_waits (void **state)
{
  struct fake_params p = params (state);
  struct fake_env e;
  struct fake_done done = { 0 };
  size_t len = 64 * KiB;
  uint8_t *buf = malloc (len);

  p.pool_size = 8 * KiB;
  e = fake_env_new (&p);
  fake_submit (&e, VUBLK_OP_READ, 0, 1, buf, len, &done);
  assert_int_equal (fake_peer_take (e.peer), 1);
  assert_non_null (e.q->pending_head);
  assert_int_equal (fake_peer_run (e.peer), 9);
  assert_int_equal (done.calls, 1);
  assert_int_equal (done.result, 0);
  assert_pattern (buf, 1, len);
  free (buf);
  fake_env_free (&e);
}

#define ON_EVERY_LAYOUT(t) \
  { #t "/split-indirect", t, NULL, NULL, (void *) LAYOUT_SPLIT_INDIRECT }, \
  { #t "/split", t, NULL, NULL, (void *) LAYOUT_SPLIT_TRIPLE }, \
  { #t "/packed", t, NULL, NULL, (void *) LAYOUT_PACKED }

int
main (void)
{
  const struct CMUnitTest tests[] = {
    ON_EVERY_LAYOUT (test_read_is_split),
    ON_EVERY_LAYOUT (test_unaligned_read),
    ON_EVERY_LAYOUT (test_zero_copy_read),
    ON_EVERY_LAYOUT (test_write_is_split),
    ON_EVERY_LAYOUT (test_rmw_phases),
    ON_EVERY_LAYOUT (test_rmw_one_block),
    ON_EVERY_LAYOUT (test_fua_adds_flush),
    ON_EVERY_LAYOUT (test_fua_without_flush_feature),
    ON_EVERY_LAYOUT (test_unaligned_write_zeroes),
    ON_EVERY_LAYOUT (test_range_lock_orders_overlapping_writes),
    ON_EVERY_LAYOUT (test_error_status_fails_request_once),
    ON_EVERY_LAYOUT (test_get_id),
    ON_EVERY_LAYOUT (test_callback_less_completion),
    ON_EVERY_LAYOUT (test_pool_shortage_waits),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
