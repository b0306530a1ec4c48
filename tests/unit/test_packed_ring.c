/* test_packed_ring.c — packed_ring.c against a device that behaves as
 * rte_vhost / SPDK may: out of order, and used descriptors written in
 * batches whose first one becomes visible last.  The duplicate check
 * (packed_ring_seen / packed_ring_published_before) must never flag a
 * correct device, with every freed slot refilled at once; and it must
 * flag an id given twice, also when the second one is not right behind
 * the first. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"

#define NUM 16
#define NSLOTS (NUM / 3)

struct dev {
  struct packed_ring *r;
  uint64_t avail, used;             /* absolute positions */
  struct { uint16_t id; unsigned n; } taken[NUM];
  unsigned ntaken;
};

static bool
lap (uint64_t abs)
{
  return PACKED_START_WRAP ^ ((abs / NUM) & 1);
}

static void
dev_take (struct dev *d)
{
  for (;;) {
    struct packed_desc *pd = &d->r->desc[d->avail % NUM];
    uint16_t f = __atomic_load_n (&pd->flags, __ATOMIC_ACQUIRE);
    unsigned n = 0;
    uint16_t id;

    if (!!(f & PACKED_DESC_F_AVAIL) != lap (d->avail)
        || !!(f & PACKED_DESC_F_USED) == lap (d->avail))
      return;
    do {
      pd = &d->r->desc[d->avail % NUM];
      f = pd->flags;
      id = pd->id;
      n++;
      d->avail++;
    } while (f & VRING_DESC_F_NEXT);
    d->taken[d->ntaken].id = id;
    d->taken[d->ntaken++].n = n;
  }
}

/* Writes the used descriptor at position at: its id and length, or
 * (flags) the flags that make it visible, in the lap of at. */
static void
dev_write (struct dev *d, uint64_t at, uint16_t id, bool flags)
{
  struct packed_desc *pd = &d->r->desc[at % NUM];

  if (!flags) {
    pd->id = id;
    pd->len = 1;
    return;
  }
  __atomic_store_n (&pd->flags,
                    lap (at) ? PACKED_DESC_F_AVAIL | PACKED_DESC_F_USED : 0,
                    __ATOMIC_RELEASE);
}

struct drv {
  struct packed_ring *r;
  uint64_t stamp[NSLOTS];
  bool busy[NSLOTS];
  unsigned long completed;
};

static void
drv_place (struct drv *v, unsigned slot, unsigned n)
{
  struct vring_desc chain[3] = {
    { .addr = 0x1000, .len = 16, .flags = VRING_DESC_F_NEXT },
    { .addr = 0x2000, .len = 512,
      .flags = VRING_DESC_F_NEXT | VRING_DESC_F_WRITE },
    { .addr = 0x3000, .len = 1, .flags = VRING_DESC_F_WRITE },
  };
  if (n == 2)
    chain[1] = chain[2];
  v->stamp[slot] = packed_ring_seen (v->r);
  v->busy[slot] = true;
  packed_ring_place (v->r, slot, chain, n);
}

/* Harvests one at a time, refilling each freed slot at once (as
 * completion.c's queue_process does).  Returns -1 on a violation. */
static int
drv_harvest (struct drv *v)
{
  for (;;) {
    struct vring_used_elem e;
    unsigned good = 0;
    int got = packed_ring_harvest (v->r, &e, 1, &good);

    if (got < 0)
      return -1;
    if (got == 0)
      return 0;
    assert_true (e.id < NSLOTS);
    if (!v->busy[e.id] || packed_ring_published_before (v->r, v->stamp[e.id]))
      return -1;
    v->busy[e.id] = false;
    v->completed++;
    drv_place (v, e.id, 2 + (unsigned) (random () % 2));
  }
}

/* Batches of up to four, written id/len first, then the flags of all but
 * the first, then the first (rte_vhost's shadow flush), with the driver
 * harvesting in between; random order of completion. */
static void
test_batched_out_of_order_never_flagged (void **state)
{
  void *mem = calloc (1, packed_ring_size (NUM, NULL, NULL));
  struct packed_ring r;
  struct dev d = { .r = &r };
  struct drv v = { .r = &r };

  (void) state;
  srandom (1);
  packed_ring_init (&r, mem, NUM);
  for (unsigned s = 0; s < NSLOTS; s++)
    drv_place (&v, s, 2 + s % 2);
  while (v.completed < 200000) {
    unsigned k, pick[4];
    uint64_t at[4];

    dev_take (&d);
    assert_true (d.ntaken > 0);
    k = 1 + (unsigned) random () % (d.ntaken < 4 ? d.ntaken : 4);
    for (unsigned i = 0; i < k; i++) {
      unsigned j = (unsigned) random () % d.ntaken;

      pick[i] = d.taken[j].id;
      at[i] = d.used;
      d.used += d.taken[j].n;
      dev_write (&d, at[i], pick[i], false);
      d.taken[j] = d.taken[--d.ntaken];
    }
    for (unsigned i = 1; i < k; i++)
      dev_write (&d, at[i], pick[i], true);
    assert_int_equal (drv_harvest (&v), 0);
    dev_write (&d, at[0], pick[0], true);
    assert_int_equal (drv_harvest (&v), 0);
  }
  free (mem);
}

/* An id given twice, the second one behind another completion: the
 * first is harvested, its slot refilled, and the second must be flagged,
 * not taken for the refilled chain. */
static void
test_duplicate_two_behind_flagged (void **state)
{
  void *mem = calloc (1, packed_ring_size (NUM, NULL, NULL));
  struct packed_ring r;
  struct dev d = { .r = &r };
  struct drv v = { .r = &r };
  struct vring_used_elem e;
  unsigned good;

  (void) state;
  packed_ring_init (&r, mem, NUM);
  for (unsigned s = 0; s < 3; s++)
    drv_place (&v, s, 3);
  dev_take (&d);
  assert_int_equal (d.ntaken, 3);
  /* 0 (good), 1 (good), 0 again: all visible before the driver looks. */
  dev_write (&d, 0, 0, false); dev_write (&d, 0, 0, true);
  dev_write (&d, 3, 1, false); dev_write (&d, 3, 1, true);
  dev_write (&d, 6, 0, false); dev_write (&d, 6, 0, true);
  assert_int_equal (packed_ring_harvest (&r, &e, 1, &good), 1);
  assert_int_equal (e.id, 0);
  assert_false (packed_ring_published_before (&r, v.stamp[0]));
  drv_place (&v, 0, 3);                         /* refilled at once */
  assert_int_equal (packed_ring_harvest (&r, &e, 1, &good), 1);
  assert_int_equal (e.id, 1);
  assert_int_equal (packed_ring_harvest (&r, &e, 1, &good), 1);
  assert_int_equal (e.id, 0);
  assert_true (packed_ring_published_before (&r, v.stamp[0]));
  free (mem);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_batched_out_of_order_never_flagged),
    cmocka_unit_test (test_duplicate_two_behind_flagged),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
