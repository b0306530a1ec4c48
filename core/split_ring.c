/* split_ring.c — split virtqueue arithmetic: layout, publishing available
 * heads with notification suppression (EVENT_IDX or the NO_NOTIFY flag),
 * harvesting used entries with a bound check on the device's index, and
 * arming interrupts with the re-check that avoids lost wakeups.
 *
 * Layout (VIRTIO 1.2, 2.7): desc 16*N (align 16), avail 6+2N (align 2, used_event
 * at ring[N]), used 6+8N (align 4, avail_event after ring[N]).  We align
 * each area to 64 bytes to keep the producer and consumer lines apart.
 */
#include <string.h>
#include <errno.h>

#include "internal.h"


size_t
split_ring_size (unsigned num, size_t *avail_off, size_t *used_off)
{
  size_t avail = ring_align_up (16u * num, AREA_ALIGN);
  size_t used = ring_align_up (avail + 6 + 2u * num, AREA_ALIGN);

  if (avail_off)
    *avail_off = avail;
  if (used_off)
    *used_off = used;
  return ring_align_up (used + 6 + 8u * num, AREA_ALIGN);
}

void
split_ring_init (struct split_ring *ring, void *mem, unsigned num,
                 bool event_idx)
{
  size_t avail_off, used_off, size;

  size = split_ring_size (num, &avail_off, &used_off);
  memset (mem, 0, size);
  ring->num = num;
  ring->desc = mem;
  ring->avail = (uint16_t *) ((uint8_t *) mem + avail_off);
  ring->used = (uint8_t *) mem + used_off;
  ring->avail_idx = 0;
  ring->kicked_idx = 0;
  __atomic_store_n (&ring->last_used_idx, 0, __ATOMIC_RELAXED);
  ring->event_idx = event_idx;
  ring->harvested = ring->seen = 0;
}

/* avail: [0] flags, [1] idx, [2 + i] ring, [2 + num] used_event */
static uint16_t *
avail_idx_ptr (const struct split_ring *ring)
{
  return &ring->avail[1];
}

static uint16_t *
used_event_ptr (const struct split_ring *ring)
{
  return &ring->avail[2 + ring->num];
}

static uint16_t *
used_flags_ptr (const struct split_ring *ring)
{
  return (uint16_t *) ring->used;
}

static uint16_t *
used_idx_ptr (const struct split_ring *ring)
{
  return (uint16_t *) (ring->used + 2);
}

static struct vring_used_elem *
used_elems (const struct split_ring *ring)
{
  return (struct vring_used_elem *) (ring->used + 4);
}

static uint16_t *
avail_event_ptr (const struct split_ring *ring)
{
  return (uint16_t *) (ring->used + 4 + 8u * ring->num);
}

void
split_ring_push_avail (struct split_ring *ring, uint16_t head)
{
  ring->avail[2 + (ring->avail_idx & (ring->num - 1))] = head;
  ring->avail_idx++;
}

bool
split_ring_publish (struct split_ring *ring)
{
  uint16_t old = ring->kicked_idx, new = ring->avail_idx;

  if (old == new)
    return false;
  /* The ring entries must be visible before the index that covers them. */
  __atomic_store_n (avail_idx_ptr (ring), new, __ATOMIC_RELEASE);
  /* Publishing the index and reading the device's event index must not be
   * reordered (store-load): a full barrier, as VIRTIO requires. */
  __atomic_thread_fence (__ATOMIC_SEQ_CST);
  ring->kicked_idx = new;
  if (ring->event_idx)
    return vring_need_event (__atomic_load_n (avail_event_ptr (ring),
                                              __ATOMIC_RELAXED), new, old);
  return !(__atomic_load_n (used_flags_ptr (ring), __ATOMIC_RELAXED)
           & VRING_USED_F_NO_NOTIFY);
}

bool
split_ring_has_used (const struct split_ring *ring)
{
  /* Also called without the queue lock, as a hint (polling threads):
   * last_used_idx is written atomically for that reason. */
  return __atomic_load_n (used_idx_ptr (ring), __ATOMIC_ACQUIRE)
         != __atomic_load_n (&ring->last_used_idx, __ATOMIC_RELAXED);
}

void
split_ring_prefetch_used (const struct split_ring *ring)
{
  uint16_t next = __atomic_load_n (&ring->last_used_idx, __ATOMIC_RELAXED);

  __builtin_prefetch (&used_elems (ring)[next & (ring->num - 1)], 0, 3);
}

int
split_ring_harvest (struct split_ring *ring, struct vring_used_elem *out,
                    unsigned max)
{
  uint16_t used_idx = __atomic_load_n (used_idx_ptr (ring), __ATOMIC_ACQUIRE);
  uint16_t pending = used_idx - ring->last_used_idx;
  unsigned n;

  if (pending > ring->num)
    return set_error (EPROTO, "backend's used index %u is %u entries ahead "
                      "of a ring of %u", used_idx, pending, ring->num);
  /* Every used entry answers an available one we published. */
  if (pending > (uint16_t) (ring->kicked_idx - ring->last_used_idx))
    return set_error (EPROTO, "backend's used index %u is %u entries ahead, "
                      "with only %u made available", used_idx, pending,
                      (uint16_t) (ring->kicked_idx - ring->last_used_idx));
  ring->seen = ring->harvested + pending;
  n = pending < max ? pending : max;
  for (unsigned i = 0; i < n; i++) {
    const struct vring_used_elem *e =
      &used_elems (ring)[(uint16_t) (ring->last_used_idx + i)
                         & (ring->num - 1)];
    out[i].id = __atomic_load_n (&e->id, __ATOMIC_RELAXED);
    out[i].len = __atomic_load_n (&e->len, __ATOMIC_RELAXED);
  }
  __atomic_store_n (&ring->last_used_idx, (uint16_t) (ring->last_used_idx + n),
                    __ATOMIC_RELAXED);
  ring->harvested += n;
  return n;
}

uint64_t
split_ring_seen (const struct split_ring *ring)
{
  return ring->seen;
}

bool
split_ring_published_before (const struct split_ring *ring, uint64_t stamp)
{
  return ring->harvested - 1 < stamp;
}

bool
split_ring_arm (struct split_ring *ring)
{
  if (ring->event_idx)
    __atomic_store_n (used_event_ptr (ring), ring->last_used_idx,
                      __ATOMIC_RELAXED);
  else
    __atomic_store_n (&ring->avail[0], 0, __ATOMIC_RELAXED);
  /* Store the event index, then re-read the used index: without this
   * barrier and re-check a completion that landed in between is never
   * signalled and we sleep forever (the classic lost wakeup). */
  __atomic_thread_fence (__ATOMIC_SEQ_CST);
  return split_ring_has_used (ring);
}

void
split_ring_disarm (struct split_ring *ring)
{
  /* Stores only when the value must change: the device reads this line
   * after every completion, and a polling thread disarms before every
   * spin, so writing it each time cost both sides a cache-line transfer
   * per request. */
  if (!ring->event_idx) {
    if (__atomic_load_n (&ring->avail[0], __ATOMIC_RELAXED)
        != VRING_AVAIL_F_NO_INTERRUPT)
      __atomic_store_n (&ring->avail[0], VRING_AVAIL_F_NO_INTERRUPT,
                        __ATOMIC_RELAXED);
    return;
  }
  /* An event index half the index space away is not reached soon (the
   * device is at most num entries ahead of last_used_idx); it is moved
   * again once a quarter of that distance has been used up. */
  uint16_t ahead = __atomic_load_n (used_event_ptr (ring), __ATOMIC_RELAXED)
                   - ring->last_used_idx;
  if (ahead < 0x4000 || ahead > 0x8000)
    __atomic_store_n (used_event_ptr (ring),
                      (uint16_t) (ring->last_used_idx + 0x8000),
                      __ATOMIC_RELAXED);
}
