#!/usr/bin/python3
"""random_io.py TARGET SHADOW COUNT SEED

Writes COUNT random-sized chunks (including 1 and 513 bytes and sizes that
cross block and request boundaries) at random offsets to TARGET and the
same to SHADOW, re-reading random ranges of TARGET as it goes and checking
them against SHADOW.  Exits non-zero at the first mismatch."""
import os
import random
import sys

target, shadow, count, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
t = os.open(target, os.O_RDWR)
s = os.open(shadow, os.O_RDWR)
size = os.fstat(s).st_size
sizes = [1, 513, 511, 4095, 4097, 65537, 1 << 20, (1 << 20) + 3]
for i in range(count):
    n = sizes[i] if i < len(sizes) else rng.choice(
        [1, 2, 7, 512, 513, 4096, rng.randint(1, 300000)])
    off = rng.randrange(0, size - n)
    data = rng.randbytes(n)
    if os.pwrite(t, data, off) != n:
        sys.exit(f"short write of {n} at {off}")
    os.pwrite(s, data, off)
    if i % 4 == 0:
        roff = rng.randrange(0, size - 1)
        rn = min(rng.choice([1, 513, 4096, 200000]), size - roff)
        got, want = os.pread(t, rn, roff), os.pread(s, rn, roff)
        if got != want:
            sys.exit(f"read of {rn} at {roff} after write {i} differs")
os.fsync(t)
os.close(t)
os.close(s)
