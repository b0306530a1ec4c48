/* memory.c — the only memory the backend sees: one memfd region holding
 * the rings, the per-request control blocks and an I/O buffer pool.  The
 * process heap is never shared.  The pool hands out page-granular blocks
 * (first fit over a bitmap) so callers can place I/O buffers where the
 * backend reaches them directly (zero copy).
 *
 * The region may be backed by 2 MiB huge pages: SPDK registers each
 * region for DMA in 2 MiB units, so its NVMe and RDMA backends fail I/O
 * on memory of 4 KiB pages.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

static bool
page_used (const struct pool *pool, size_t i)
{
  return pool->bitmap[i / 64] & (1ull << (i % 64));
}

static void
mark_pages (struct pool *pool, size_t first, size_t n, bool used)
{
  for (size_t i = first; i < first + n; i++) {
    if (used)
      pool->bitmap[i / 64] |= 1ull << (i % 64);
    else
      pool->bitmap[i / 64] &= ~(1ull << (i % 64));
  }
}

/* Creates a memfd of size bytes (huge pages if hugetlb) and maps it
 * shared into mem.  Returns 0 or -errno; on failure mem is left empty. */
static int
map_memfd (struct shared_memory *mem, size_t size, bool hugetlb)
{
  const char *kind = hugetlb ? "huge-page memfd" : "memfd";
  int err;

  mem->fd = memfd_create ("vublk",
                          MFD_CLOEXEC | (hugetlb ? MFD_HUGETLB : 0));
  if (mem->fd == -1)
    return set_error_errno (errno, "memfd_create (%s)", kind);
  if (ftruncate (mem->fd, size) == -1) {
    err = set_error_errno (errno, "ftruncate %s to %zu bytes", kind, size);
    goto error;
  }
  /* MAP_POPULATE: huge pages are reserved here, so a shortage shows now
   * rather than as SIGBUS on first touch. */
  mem->base = mmap (NULL, size, PROT_READ | PROT_WRITE,
                    MAP_SHARED | (hugetlb ? MAP_POPULATE : 0), mem->fd, 0);
  if (mem->base == MAP_FAILED) {
    mem->base = NULL;
    err = set_error_errno (errno, "mmap %zu bytes of %s", size, kind);
    goto error;
  }
  mem->size = size;
  mem->hugetlb = hugetlb;
  return 0;

 error:
  close (mem->fd);
  mem->fd = -1;
  return err;
}

int
shared_memory_create (struct shared_memory *mem, size_t size,
                      size_t pool_offset, size_t pool_size, bool hugetlb)
{
  struct pool *pool = &mem->pool;
  size_t words;
  int err;

  memset (mem, 0, sizeof *mem);
  mem->fd = -1;
  if (pool_offset % POOL_PAGE || pool_size % POOL_PAGE
      || pool_offset + pool_size > size)
    return set_error (EINVAL, "shared memory layout is not page aligned");

  if (hugetlb) {
    err = map_memfd (mem, (size + HUGE_PAGE - 1) & ~(size_t) (HUGE_PAGE - 1),
                     true);
    if (err == 0)
      goto mapped;
    snprintf (mem->fallback_reason, sizeof mem->fallback_reason, "%s",
              vublk_get_error ());
  }
  err = map_memfd (mem, size, false);
  if (err)
    return err;
 mapped:

  pthread_mutex_init (&pool->lock, NULL);
  pool->base = mem->base + pool_offset;
  pool->pages = pool_size / POOL_PAGE;
  words = (pool->pages + 63) / 64;
  pool->bitmap = calloc (words ? words : 1, sizeof (uint64_t));
  pool->run_length = calloc (pool->pages ? pool->pages : 1, sizeof (uint32_t));
  if (!pool->bitmap || !pool->run_length) {
    shared_memory_destroy (mem);
    return set_error (ENOMEM, "allocating pool bitmap");
  }
  return 0;
}

void
shared_memory_destroy (struct shared_memory *mem)
{
  if (mem->base)
    munmap (mem->base, mem->size);
  if (mem->fd >= 0)
    close (mem->fd);
  if (mem->pool.bitmap)
    pthread_mutex_destroy (&mem->pool.lock);
  free (mem->pool.bitmap);
  free (mem->pool.run_length);
  memset (mem, 0, sizeof *mem);
  mem->fd = -1;
}

bool
pool_contains (const struct pool *pool, const void *p, size_t len)
{
  uintptr_t a = (uintptr_t) p, base = (uintptr_t) pool->base;
  size_t size = pool->pages * POOL_PAGE;

  return a >= base && a - base <= size && len <= size - (a - base);
}

/* Finds `need` free consecutive pages starting the search at `from` and
 * stopping before `to`.  Returns the first page or SIZE_MAX. */
static size_t
find_run (const struct pool *pool, size_t from, size_t to, size_t need)
{
  size_t i = from, run = 0;

  while (i < to) {
    if (run == 0 && i % 64 == 0 && pool->bitmap[i / 64] == ~0ull) {
      i += 64;             /* skip a fully used word */
      continue;
    }
    if (page_used (pool, i))
      run = 0;
    else if (++run == need)
      return i + 1 - need;
    i++;
  }
  return SIZE_MAX;
}

void *
pool_alloc (struct pool *pool, size_t len)
{
  size_t need, first;

  if (len > pool->pages * POOL_PAGE)   /* also before rounding can wrap */
    return NULL;
  need = len ? (len + POOL_PAGE - 1) / POOL_PAGE : 1;
  if (need > pool->pages || need > UINT32_MAX)
    return NULL;
  pthread_mutex_lock (&pool->lock);
  /* First fit: the lowest free run, so recently freed blocks are reused
   * while still in the CPU caches (next fit, cycling through the whole
   * pool, made 1 MiB FUSE writes a third slower). */
  first = find_run (pool, 0, pool->pages, need);
  if (first != SIZE_MAX) {
    mark_pages (pool, first, need, true);
    pool->run_length[first] = need;
    pool->used_pages += need;
  }
  pthread_mutex_unlock (&pool->lock);
  return first == SIZE_MAX ? NULL : pool->base + first * POOL_PAGE;
}

void
pool_free (struct pool *pool, void *p)
{
  size_t first, n;

  if (!p)
    return;
  first = ((uint8_t *) p - pool->base) / POOL_PAGE;
  pthread_mutex_lock (&pool->lock);
  n = pool->run_length[first];
  pool->run_length[first] = 0;
  mark_pages (pool, first, n, false);
  pool->used_pages -= n;
  pthread_mutex_unlock (&pool->lock);
}
