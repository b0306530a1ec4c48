/* fuzz_used_ring — libFuzzer target for used-ring harvesting: whatever
 * the backend writes into the used ring (index, ids, lengths) must be
 * harvested within bounds and every entry validated against what is in
 * flight, so a lying backend can neither complete a request twice nor
 * make the client read or write outside its buffers.
 *
 * Input: byte 0 ring size and indirect mode, byte 1..2 where harvesting
 * starts, bytes 3..34 which slots are in flight, the rest the used ring's
 * idx and entries as the backend wrote them. */
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
  struct split_ring *ring = &q.ring;
  struct vring_used_elem out[64];
  size_t used_off, ring_bytes, used_bytes;
  unsigned num;
  void *mem;

  if (size < 35)
    return 0;
  num = 8u << (data[0] % 8);                       /* 8 .. 1024 */
  memset (&dev, 0, sizeof dev);
  memset (&q, 0, sizeof q);
  dev.features = data[0] & 0x80 ? 1ull << VIRTIO_RING_F_INDIRECT_DESC : 0;
  q.dev = &dev;
  q.nslots = dev.features ? num : num / 3;
  q.slots = calloc (q.nslots, sizeof *q.slots);
  ring_bytes = split_ring_size (num, NULL, &used_off);
  mem = aligned_alloc (4096, (ring_bytes + 4095) & ~(size_t) 4095);
  if (!q.slots || !mem) {
    free (q.slots);
    free (mem);
    return 0;
  }
  split_ring_init (ring, mem, num, false);
  for (unsigned i = 0; i < q.nslots; i++) {
    q.slots[i].req = data[3 + (i / 8) % 32] & (1u << (i % 8)) ? &dummy : NULL;
    q.slots[i].data_len = 4096 * (i % 5);
    q.slots[i].device_writes = i & 1;
  }
  ring->last_used_idx = (uint16_t) (data[1] | data[2] << 8);
  used_bytes = 4 + 8 * (size_t) num;
  memcpy ((uint8_t *) mem + used_off, data + 35,
          size - 35 < used_bytes ? size - 35 : used_bytes);

  for (unsigned rounds = 0; rounds < 64; rounds++) {
    int got = split_ring_harvest (ring, out, 64);

    if (got <= 0)
      break;
    for (int i = 0; i < got; i++) {
      struct slot *s = queue_validate_used (&q, &out[i]);

      if (!s)
        goto out;
      if (s < q.slots || s >= q.slots + q.nslots || !s->req)
        abort ();                  /* validation let a bad entry through */
      s->req = NULL;               /* completed: a second time is invalid */
    }
  }
 out:
  free (q.slots);
  free (mem);
  return 0;
}
