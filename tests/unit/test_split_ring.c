/* test_split_ring.c — split_ring.c: the EVENT_IDX notification rule across
 * the 16-bit wrap, publish/kick decisions, harvesting in order across
 * index wrap-around with a simulated device, the runaway-index checks
 * (past the ring, past what was made available),
 * disarming that stays silent while storing rarely, and ring.c's
 * placement that leaves equal descriptors alone but never a stale one. */
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <setjmp.h>
#include <errno.h>
#include <stdlib.h>
#include <cmocka.h>

#include "internal.h"

#define NUM 8

static void
test_need_event_wrap (void **state)
{
  (void) state;
  assert_true (vring_need_event (5, 6, 5));     /* event just passed */
  assert_false (vring_need_event (7, 6, 5));    /* not reached yet */
  assert_false (vring_need_event (4, 6, 5));    /* already behind old */
  /* Across the wrap: old 65534, new 2, event 65535 lies in (old, new]. */
  assert_true (vring_need_event (65535, 2, 65534));
  assert_true (vring_need_event (1, 2, 65534));
  assert_false (vring_need_event (65533, 2, 65534));
  assert_false (vring_need_event (3, 2, 65534));
}

/* The device side: used ring pointers in the same layout. */
static uint16_t *
used_idx (struct split_ring *r)
{
  return (uint16_t *) (r->used + 2);
}

static struct vring_used_elem *
used_elem (struct split_ring *r, uint16_t i)
{
  return (struct vring_used_elem *) (r->used + 4) + (i & (r->num - 1));
}

static void
test_publish_kick_with_event_idx (void **state)
{
  void *mem = calloc (1, split_ring_size (NUM, NULL, NULL));
  struct split_ring r;
  uint16_t *avail_event;

  (void) state;
  split_ring_init (&r, mem, NUM, true);
  avail_event = (uint16_t *) (r.used + 4 + 8 * NUM);
  *avail_event = 0;             /* device wants a kick at entry 0 */
  split_ring_push_avail (&r, 3);
  assert_true (split_ring_publish (&r));
  assert_int_equal (r.avail[1], 1);
  assert_int_equal (r.avail[2], 3);
  *avail_event = 5;             /* device will look again at index 5 */
  split_ring_push_avail (&r, 1);
  assert_false (split_ring_publish (&r));
  assert_false (split_ring_publish (&r));       /* nothing new */
  free (mem);
}

static void
test_publish_without_event_idx_honours_no_notify (void **state)
{
  void *mem = calloc (1, split_ring_size (NUM, NULL, NULL));
  struct split_ring r;

  (void) state;
  split_ring_init (&r, mem, NUM, false);
  split_ring_push_avail (&r, 0);
  assert_true (split_ring_publish (&r));
  *(uint16_t *) r.used = VRING_USED_F_NO_NOTIFY;
  split_ring_push_avail (&r, 1);
  assert_false (split_ring_publish (&r));
  free (mem);
}

static void
test_harvest_across_wrap (void **state)
{
  void *mem = calloc (1, split_ring_size (NUM, NULL, NULL));
  struct split_ring r;
  struct vring_used_elem out[NUM];
  uint16_t dev_idx = 0;

  (void) state;
  split_ring_init (&r, mem, NUM, true);
  /* 70000 cycles of up to 3 completions take the index past 65535. */
  for (unsigned cycle = 0; cycle < 70000; cycle++) {
    unsigned n = 1 + cycle % 3;
    for (unsigned k = 0; k < n; k++) {
      used_elem (&r, dev_idx)->id = (dev_idx * 7u) & 0xffff;
      used_elem (&r, dev_idx)->len = k;
      dev_idx++;
    }
    r.kicked_idx = dev_idx;      /* as if we had made them available */
    *used_idx (&r) = dev_idx;
    assert_true (split_ring_arm (&r));          /* entries pending */
    assert_int_equal (split_ring_harvest (&r, out, NUM), n);
    for (unsigned k = 0; k < n; k++) {
      uint16_t expect_idx = dev_idx - n + k;
      assert_int_equal (out[k].id, (expect_idx * 7u) & 0xffff);
      assert_int_equal (out[k].len, k);
    }
    assert_false (split_ring_arm (&r));
    /* arm asks for an interrupt at the next entry */
    assert_int_equal (r.avail[2 + NUM], r.last_used_idx);
  }
  free (mem);
}

static void
test_harvest_rejects_runaway_index (void **state)
{
  void *mem = calloc (1, split_ring_size (NUM, NULL, NULL));
  struct split_ring r;
  struct vring_used_elem out[NUM];

  (void) state;
  split_ring_init (&r, mem, NUM, true);
  *used_idx (&r) = NUM + 1;
  assert_int_equal (split_ring_harvest (&r, out, NUM), -EPROTO);
  assert_int_equal (r.last_used_idx, 0);
  *used_idx (&r) = 5000;
  assert_int_equal (split_ring_harvest (&r, out, NUM), -EPROTO);
  /* Within the ring, but more than was made available: 3 published, 4
   * used. */
  for (uint16_t i = 0; i < 3; i++)
    split_ring_push_avail (&r, i);
  split_ring_publish (&r);
  *used_idx (&r) = 4;
  assert_int_equal (split_ring_harvest (&r, out, NUM), -EPROTO);
  assert_non_null (strstr (vublk_get_error (), "with only 3 made available"));
  *used_idx (&r) = 3;
  assert_int_equal (split_ring_harvest (&r, out, NUM), 3);
  free (mem);
}

/* A polling thread disarms before every spin; the device must never be
 * asked to signal while it does, across the 16-bit wrap, and the event
 * index is stored only now and then (the device reads its line after
 * every completion). */
static void
test_disarm_stays_silent_and_stores_rarely (void **state)
{
  void *mem = calloc (1, split_ring_size (NUM, NULL, NULL));
  struct split_ring r;
  struct vring_used_elem out[NUM];
  uint16_t dev_idx = 0, *used_event;
  unsigned stores = 0;

  (void) state;
  split_ring_init (&r, mem, NUM, true);
  used_event = &r.avail[2 + NUM];
  for (unsigned cycle = 0; cycle < 140000; cycle++) {
    unsigned n = 1 + cycle % 3;
    uint16_t before = *used_event;

    split_ring_disarm (&r);
    stores += *used_event != before;
    for (unsigned k = 0; k < n; k++)
      used_elem (&r, dev_idx++)->id = k;
    /* The device's rule for the entries it just published. */
    assert_false (vring_need_event (*used_event, dev_idx,
                                    (uint16_t) (dev_idx - n)));
    r.kicked_idx = dev_idx;      /* as if we had made them available */
    *used_idx (&r) = dev_idx;
    assert_int_equal (split_ring_harvest (&r, out, NUM), n);
  }
  /* About one store per 0x4000 entries (280000 entries here), not one
   * per disarm. */
  assert_in_range (stores, 1, 280000 / 0x4000 + 2);
  /* Arming still asks for the next entry, and disarming undoes it. */
  assert_false (split_ring_arm (&r));
  assert_int_equal (*used_event, r.last_used_idx);
  split_ring_disarm (&r);
  assert_false (vring_need_event (*used_event, (uint16_t) (dev_idx + 1),
                                  dev_idx));
  free (mem);
}

/* Without EVENT_IDX the flag is set by disarm and cleared by arm. */
static void
test_disarm_without_event_idx_sets_the_flag (void **state)
{
  void *mem = calloc (1, split_ring_size (NUM, NULL, NULL));
  struct split_ring r;

  (void) state;
  split_ring_init (&r, mem, NUM, false);
  split_ring_disarm (&r);
  assert_int_equal (r.avail[0], VRING_AVAIL_F_NO_INTERRUPT);
  split_ring_disarm (&r);
  assert_int_equal (r.avail[0], VRING_AVAIL_F_NO_INTERRUPT);
  assert_false (split_ring_arm (&r));
  assert_int_equal (r.avail[0], 0);
  split_ring_disarm (&r);
  assert_int_equal (r.avail[0], VRING_AVAIL_F_NO_INTERRUPT);
  free (mem);
}

/* ring_place skips stores of descriptors that are already right, so a
 * descriptor changed behind its back (by a device) must be written
 * again, and a different chain must replace the old one: both layouts
 * of a split ring, direct and indirect. */
static void
test_place_rewrites_changed_descriptors (void **state)
{
  for (int indirect = 0; indirect <= 1; indirect++) {
    void *mem = calloc (1, ring_bytes (3 * NUM));
    struct vring_desc table[4] = { { 0 } };
    struct vring_desc chain[3] = {
      { .addr = 0x1000, .len = 16, .flags = VRING_DESC_F_NEXT },
      { .addr = 0x2000, .len = 4096,
        .flags = VRING_DESC_F_NEXT | VRING_DESC_F_WRITE },
      { .addr = 0x3000, .len = 1, .flags = VRING_DESC_F_WRITE },
    };
    struct vq_ring r;
    struct vring_desc *d;

    (void) state;
    ring_init (&r, mem, 3 * NUM, false, indirect, true);
    d = indirect ? table : &r.s.desc[3 * 2];
    for (int round = 0; round < 4; round++) {
      if (round == 1)
        d[1].addr = 0xbad;              /* a device scribbled on it */
      if (round == 2)
        chain[1].len = 512;             /* a different request */
      if (round == 3) {
        r.s.desc[2].len = 0;            /* the indirect head, scribbled */
        d[2].flags = 0;
      }
      ring_place (&r, 2, chain, 3, table, 0x9000);
      for (int i = 0; i < 3; i++) {
        assert_int_equal (d[i].addr, chain[i].addr);
        assert_int_equal (d[i].len, chain[i].len);
        assert_int_equal (d[i].flags, chain[i].flags);
        assert_int_equal (d[i].next, indirect ? i + 1 : 3 * 2 + i + 1);
      }
      if (indirect) {
        assert_int_equal (r.s.desc[2].addr, 0x9000);
        assert_int_equal (r.s.desc[2].len, 3 * sizeof (struct vring_desc));
        assert_int_equal (r.s.desc[2].flags, VRING_DESC_F_INDIRECT);
      }
    }
    free (mem);
  }
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_need_event_wrap),
    cmocka_unit_test (test_publish_kick_with_event_idx),
    cmocka_unit_test (test_publish_without_event_idx_honours_no_notify),
    cmocka_unit_test (test_harvest_across_wrap),
    cmocka_unit_test (test_harvest_rejects_runaway_index),
    cmocka_unit_test (test_disarm_stays_silent_and_stores_rarely),
    cmocka_unit_test (test_disarm_without_event_idx_sets_the_flag),
    cmocka_unit_test (test_place_rewrites_changed_descriptors),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
