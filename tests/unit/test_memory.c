/* test_memory.c — memory.c: the shared region is a memfd mapping; the
 * pool hands out page-aligned, non-overlapping runs inside itself, refuses
 * what does not fit, reuses freed runs (lowest first), and pool_contains bounds exactly
 * the pool. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"

#define REGION (1u << 20)
#define POOL_OFF (64u << 10)
#define POOL_SIZE (512u << 10)
#define PAGES (POOL_SIZE / POOL_PAGE)

static int
setup (void **state)
{
  static struct shared_memory mem;

  if (shared_memory_create (&mem, REGION, POOL_OFF, POOL_SIZE, false))
    return -1;
  *state = &mem;
  return 0;
}

static int
teardown (void **state)
{
  shared_memory_destroy (*state);
  return 0;
}

static void
test_region_is_shared_memfd (void **state)
{
  struct shared_memory *mem = *state;

  assert_true (mem->fd >= 0);
  assert_int_equal (mem->size, REGION);
  mem->base[0] = 0x5a;
  mem->base[REGION - 1] = 0xa5;
  assert_int_equal (mem->base[0], 0x5a);
  assert_true (pool_contains (&mem->pool, mem->base + POOL_OFF, POOL_SIZE));
  assert_false (pool_contains (&mem->pool, mem->base + POOL_OFF - 1, 2));
  assert_false (pool_contains (&mem->pool, mem->base + POOL_OFF, POOL_SIZE + 1));
  assert_false (pool_contains (&mem->pool, mem->base, 1));
}

static void
test_alloc_bounds_and_reuse (void **state)
{
  struct shared_memory *mem = *state;
  struct pool *pool = &mem->pool;
  uint8_t *blocks[PAGES];
  unsigned n = 0;

  /* Sizes past the pool are refused, also where rounding up would wrap. */
  assert_null (pool_alloc (pool, SIZE_MAX));
  assert_null (pool_alloc (pool, SIZE_MAX - 10));
  assert_null (pool_alloc (pool, PAGES * POOL_PAGE + 1));
  /* Every one-byte allocation takes a whole, distinct, aligned page. */
  while (n < PAGES && (blocks[n] = pool_alloc (pool, 1)))
    n++;
  assert_int_equal (n, PAGES);
  assert_null (pool_alloc (pool, 1));
  for (unsigned i = 0; i < n; i++) {
    assert_int_equal ((uintptr_t) blocks[i] % POOL_PAGE, 0);
    assert_true (pool_contains (pool, blocks[i], POOL_PAGE));
    memset (blocks[i], (int) i, POOL_PAGE);
  }
  for (unsigned i = 0; i < n; i++)
    assert_int_equal (blocks[i][POOL_PAGE - 1], (uint8_t) i);  /* no overlap */

  /* Free every other page: one page fits, two contiguous do not. */
  for (unsigned i = 0; i < n; i += 2)
    pool_free (pool, blocks[i]);
  assert_null (pool_alloc (pool, 2 * POOL_PAGE));
  blocks[0] = pool_alloc (pool, POOL_PAGE);
  assert_non_null (blocks[0]);
  pool_free (pool, blocks[0]);
  for (unsigned i = 1; i < n; i += 2)
    pool_free (pool, blocks[i]);

  /* Everything free again: the whole pool in one run, not one byte more. */
  assert_null (pool_alloc (pool, POOL_SIZE + 1));
  blocks[0] = pool_alloc (pool, POOL_SIZE);
  assert_non_null (blocks[0]);
  assert_ptr_equal (blocks[0], mem->base + POOL_OFF);
  pool_free (pool, blocks[0]);
  pool_free (pool, NULL);                 /* accepted */
}

static void
test_runs_of_mixed_sizes (void **state)
{
  struct pool *pool = &((struct shared_memory *) *state)->pool;
  uint8_t *a = pool_alloc (pool, 3 * POOL_PAGE + 1);   /* 4 pages */
  uint8_t *b = pool_alloc (pool, 5000);                /* 2 pages */
  uint8_t *c = pool_alloc (pool, 64 << 10);            /* 16 pages */

  assert_non_null (a);
  assert_non_null (b);
  assert_non_null (c);
  assert_true (b >= a + 4 * POOL_PAGE || a >= b + 2 * POOL_PAGE);
  assert_true (c >= b + 2 * POOL_PAGE || b >= c + (64 << 10));
  assert_true (c >= a + 4 * POOL_PAGE || a >= c + (64 << 10));
  pool_free (pool, b);
  /* The freed two pages are found again. */
  uint8_t *d[PAGES];
  unsigned n = 0;
  while (n < PAGES && (d[n] = pool_alloc (pool, 2 * POOL_PAGE)))
    n++;
  assert_int_equal (n, (PAGES - 4 - 16) / 2);
  for (unsigned i = 0; i < n; i++)
    pool_free (pool, d[i]);
  pool_free (pool, a);
  pool_free (pool, c);
}

/* First fit: a freed block is handed out again before any untouched
 * memory further up, so hot buffers stay in the CPU caches. */
static void
test_freed_block_is_reused_first (void **state)
{
  struct pool *pool = &((struct shared_memory *) *state)->pool;
  uint8_t *a = pool_alloc (pool, 64 << 10);
  uint8_t *b = pool_alloc (pool, 64 << 10);
  uint8_t *c, *d;

  assert_ptr_equal (a, pool->base);
  assert_ptr_equal (b, a + (64 << 10));
  pool_free (pool, a);
  c = pool_alloc (pool, 64 << 10);
  assert_ptr_equal (c, a);
  pool_free (pool, c);
  /* A smaller request also lands in the lowest hole. */
  d = pool_alloc (pool, POOL_PAGE);
  assert_ptr_equal (d, a);
  pool_free (pool, d);
  pool_free (pool, b);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_region_is_shared_memfd, setup, teardown),
    cmocka_unit_test_setup_teardown (test_alloc_bounds_and_reuse, setup, teardown),
    cmocka_unit_test_setup_teardown (test_runs_of_mixed_sizes, setup, teardown),
    cmocka_unit_test_setup_teardown (test_freed_block_is_reused_first, setup, teardown),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
