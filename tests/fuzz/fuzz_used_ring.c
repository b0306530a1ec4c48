/* fuzz_used_ring — libFuzzer target for harvesting completions, split and
 * packed: whatever the backend writes into the ring (indexes, ids, flags,
 * lengths) must be harvested within bounds and every entry validated
 * against what is in flight, so a lying backend can neither complete a
 * request twice nor make the client read or write outside its buffers.
 *
 * Input: byte 0 ring size (bits 0-2), packed (bit 6), indirect (bit 7);
 * bytes 1..2 where harvesting starts (split); bytes 3..34 which slots are
 * in flight; the rest the device's writes: the split used ring (idx and
 * entries), or the packed descriptor ring laid over the chains placed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static struct request dummy;
  struct vublk dev;
  struct vublk_queue q;
  struct vq_ring *ring = &q.ring;
  struct vring_used_elem out[64];
  struct slot_ctl ctl[3];
  size_t device_off, driver_off, bytes, area;
  unsigned num;
  bool packed;
  void *mem;

  if (size < 35)
    return 0;
  num = 8u << (data[0] % 8);                       /* 8 .. 1024 */
  packed = data[0] & 0x40;
  memset (&dev, 0, sizeof dev);
  memset (&q, 0, sizeof q);
  q.dev = &dev;
  bytes = ring_bytes (num);
  mem = aligned_alloc (4096, (bytes + 4095) & ~(size_t) 4095);
  if (!mem)
    return 0;
  ring_init (ring, mem, num, packed, data[0] & 0x80, false);
  q.nslots = ring_slots (ring);
  q.slots = calloc (q.nslots, sizeof *q.slots);
  if (!q.slots) {
    free (mem);
    return 0;
  }
  for (unsigned i = 0; i < q.nslots; i++) {
    struct vring_desc chain[3] = {
      { .addr = 4096, .len = 16, .flags = VRING_DESC_F_NEXT },
      { .addr = 8192, .len = 4096, .flags = VRING_DESC_F_NEXT },
      { .addr = 12288, .len = 1, .flags = VRING_DESC_F_WRITE },
    };
    q.slots[i].req = data[3 + (i / 8) % 32] & (1u << (i % 8)) ? &dummy : NULL;
    q.slots[i].data_len = 4096 * (i % 5);
    q.slots[i].device_writes = i & 1;
    if (q.slots[i].req)
      ring_place (ring, i, chain, 3, ctl[0].indirect, 0);
  }
  if (packed) {
    /* The device may have rewritten any descriptor it was given. */
    area = 16 * (size_t) num;
    memcpy (mem, data + 35, size - 35 < area ? size - 35 : area);
  }
  else {
    split_ring_size (num, &driver_off, &device_off);
    ring->s.last_used_idx = (uint16_t) (data[1] | data[2] << 8);
    area = 4 + 8 * (size_t) num;
    memcpy ((uint8_t *) mem + device_off, data + 35,
            size - 35 < area ? size - 35 : area);
  }

  for (unsigned rounds = 0; rounds < 64; rounds++) {
    bool violation;
    int got = ring_harvest (ring, out, 64, &violation);

    for (int i = 0; i < got; i++) {
      struct slot *s = queue_validate_used (&q, &out[i]);

      if (!s)
        goto out;
      if (s < q.slots || s >= q.slots + q.nslots || !s->req)
        abort ();                  /* validation let a bad entry through */
      s->req = NULL;               /* completed: a second time is invalid */
    }
    if (violation || got <= 0)
      break;
  }
 out:
  free (q.slots);
  free (mem);
  return 0;
}
