/* test_split_ring.c — split_ring.c: the EVENT_IDX notification rule across
 * the 16-bit wrap, publish/kick decisions, harvesting in order across
 * index wrap-around with a simulated device, and the runaway-index check. */
#include <stdarg.h>
#include <stddef.h>
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
  free (mem);
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
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
