#!/usr/bin/env bash
# vublk-fuse data path against qemu-storage-daemon: the file equals the
# image byte for byte; random writes of random sizes (1 and 513 bytes
# among them) at random offsets equal a shadow copy after unmount; punch
# hole and zero range read back zero; sizes and ends; fsync; O_DIRECT;
# O_SYNC, O_DSYNC and RWF_DSYNC writes flush (a backend failing flushes);
# fio with crc32c verification at queue depth 32; qemu-img convert from
# the file; a backend without flush and write-zeroes (fsync is a no-op,
# fallocate writes zeroes); mkfs.ext4 and fsck on it.
. "$(dirname "$0")/lib.sh"
requires qemu-storage-daemon fusermount3 qemu-img fio cmp fallocate
M=$((64 << 20))

make_random_image "$T/disk.img" 64M
cp "$T/disk.img" "$T/shadow.img"
start_qsd "$T/disk.img" "$T/v.sock" num-queues=2
touch "$T/file"
mount_fuse "$T/v.sock" "$T/file"

# Byte for byte, size, block size.
cmp "$T/file" "$T/shadow.img" || fail "file differs from the image"
[[ $(stat -c %s "$T/file") == "$M" ]] || fail "size $(stat -c %s "$T/file")"
[[ $(stat -c %o "$T/file") == 512 ]] || fail "st_blksize $(stat -c %o "$T/file")"
stat -f "$T/file" >/dev/null || fail "statfs"

# Random writes of random sizes at random offsets, re-read as we go.
/usr/bin/python3 "$(dirname "$0")/random_io.py" "$T/file" "$T/shadow.img" 400 $RANDOM \
  || fail "random I/O through the file"
cmp "$T/file" "$T/shadow.img" || fail "file differs from the shadow copy"

# Punch hole and zero range (unaligned edges too) read back zero.
fallocate -p -o 1048576 -l 1048576 "$T/file"
cmp -n 1048576 -i 1048576:0 "$T/file" /dev/zero || fail "punched range not zero"
fallocate -p -o 3000001 -l 70000 "$T/file"
cmp -n 70000 -i 3000001:0 "$T/file" /dev/zero || fail "unaligned punch not zero"
fallocate -z -o 5000000 -l 123457 "$T/file"
cmp -n 123457 -i 5000000:0 "$T/file" /dev/zero || fail "zero range not zero"
for r in "1048576 1048576" "3000001 70000" "5000000 123457"; do
  set -- $r
  dd if=/dev/zero of="$T/shadow.img" bs=1 seek="$1" count="$2" conv=notrunc status=none
done
cmp "$T/file" "$T/shadow.img" || fail "zeroing touched data outside the range"
if fallocate -o 0 -l 4096 "$T/file" 2>"$T/err"; then
  fail "plain fallocate should be unsupported"
fi
grep -q "not supported" "$T/err" || fail "plain fallocate: $(cat "$T/err")"

# The ends: reads past the end are short, writes past it ENOSPC, a write
# crossing it short; the size never changes.
[[ $(dd if="$T/file" bs=4096 skip=$((M / 4096 - 1)) count=4 status=none | wc -c) == 4096 ]] \
  || fail "read across the end is not short"
[[ $(dd if="$T/file" bs=4096 skip=$((M / 4096 + 10)) count=1 status=none | wc -c) == 0 ]] \
  || fail "read past the end returned data"
if dd if=/dev/zero of="$T/file" bs=4096 seek=$((M / 4096)) count=1 conv=notrunc \
     status=none 2>"$T/err"; then
  fail "write past the end succeeded"
fi
grep -q "No space left" "$T/err" || fail "write past the end: $(cat "$T/err")"
if truncate -s 1M "$T/file" 2>"$T/err"; then fail "truncate shrank the device"; fi
: >"$T/file"          # O_TRUNC is ignored
[[ $(stat -c %s "$T/file") == "$M" ]] || fail "size changed"
cmp "$T/file" "$T/shadow.img" || fail "O_TRUNC lost data"
# The kernel's idea of the size stays the device's after an O_TRUNC
# open: an O_APPEND write right after it is past the end (ENOSPC), not at
# offset 0, and a mapping keeps its dirty page.  (With FUSE's atomic
# O_TRUNC the kernel took the open for a truncation done: the append
# overwrote the start of the disk, the page was dropped.)  The kernel
# sends truncate(2) by path to 0 as it sends O_TRUNC, so that is ignored
# too; ftruncate, and truncation by path to another size, still fail.
/usr/bin/python3 - "$T/file" 2>"$T/err" <<'PY' || fail "O_TRUNC open: $(cat "$T/err")"
import errno, mmap, os, sys
path = sys.argv[1]
fd = os.open(path, os.O_RDWR)
m = mmap.mmap(fd, 1 << 20)
m[4096:4100] = b"ZZZZ"
os.close(os.open(path, os.O_WRONLY | os.O_TRUNC))
app = os.open(path, os.O_WRONLY | os.O_APPEND)
try:
    os.write(app, b"XYZ")
    sys.exit("an O_APPEND write after an O_TRUNC open succeeded")
except OSError as e:
    if e.errno != errno.ENOSPC:
        raise
m.flush()
if os.pread(fd, 4, 4096) != b"ZZZZ":
    sys.exit("the mapping's dirty page was dropped")
if os.pread(fd, 3, 0) == b"XYZ":
    sys.exit("the O_APPEND write landed at offset 0")
size = os.fstat(fd).st_size
os.truncate(path, 0)
if os.stat(path).st_size != size:
    sys.exit("truncate by path to 0 changed the size")
for what, call in (("path to 1 MiB", lambda: os.truncate(path, 1 << 20)),
                   ("descriptor to 0", lambda: os.ftruncate(fd, 0))):
    try:
        call()
        sys.exit("truncation by %s succeeded" % what)
    except OSError as e:
        if e.errno != errno.EPERM:
            raise
PY
printf ZZZZ | dd of="$T/shadow.img" bs=1 seek=4096 conv=notrunc status=none
cmp "$T/file" "$T/shadow.img" || fail "O_TRUNC open with a mapping: data differs"

# vublk copy onto the file, which ignores O_TRUNC: the zeroes of the
# source are written, not skipped as holes (the old data would stay), and
# a source shorter than the disk, of an odd length, leaves the rest as it
# was and succeeds (the file keeps its size: no truncate).
head -c $((2 * 1048576 + 1)) /dev/zero >"$T/zeros"
"$VUBLK_BIN" copy "$T/zeros" "$T/file" 2>"$T/err" \
  || fail "vublk copy of zeroes onto the file: $(cat "$T/err")"
dd if="$T/zeros" of="$T/shadow.img" conv=notrunc status=none
cmp "$T/file" "$T/shadow.img" || fail "vublk copy onto the file: old data kept where the source has zeroes, or the rest touched"
[[ $(stat -c %s "$T/file") == "$M" ]] || fail "vublk copy changed the size"

# fsync, O_DIRECT both ways.
dd if="$T/shadow.img" of="$T/file" bs=64k count=16 conv=notrunc,fsync status=none
dd if="$T/file" of="$T/direct" bs=1M count=8 iflag=direct status=none
cmp "$T/direct" <(head -c 8M "$T/shadow.img") || fail "O_DIRECT read"
head -c 1M /dev/urandom >"$T/chunk"
dd if="$T/chunk" of="$T/file" bs=1M seek=9 oflag=direct conv=notrunc status=none
dd if="$T/chunk" of="$T/shadow.img" bs=1M seek=9 conv=notrunc status=none
cmp "$T/file" "$T/shadow.img" || fail "O_DIRECT write"

# fio: random writes then verified reads, direct I/O, queue depth 32.
fio --name=verify --filename="$T/file" --direct=1 --ioengine=libaio \
    --iodepth=32 --rw=randwrite --bsrange=4k-128k --size=32M \
    --verify=crc32c --verify_fatal=1 --verify_state_save=0 --fallocate=none \
    --output="$T/fio.out" || { cat "$T/fio.out"; fail "fio verify"; }
grep -q "err= 0" "$T/fio.out" || { cat "$T/fio.out"; fail "fio reported errors"; }
dd if="$T/file" of="$T/shadow.img" bs=1M count=32 conv=notrunc status=none

# qemu-img convert from the file.
qemu-img convert -f raw -O qcow2 "$T/file" "$T/copy.qcow2"
qemu-img compare -f raw -F qcow2 "$T/shadow.img" "$T/copy.qcow2" || fail "convert"

# Unmount flushes; the backing image then equals what was written.
unmount_fuse "$T/file" "$FUSE_PID"
cmp "$T/disk.img" "$T/shadow.img" || fail "backing image differs after unmount"

# Without spinning (the loop sleeps at once; completion threads answer),
# several plugged loops (--threads) and libfuse's loop (--clone-fd) serve
# the same data.  (Everything above ran with the default --spin.)
for opts in "--spin 0" "--threads 3" "--threads 4 --clone-fd"; do
  cp "$T/disk.img" "$T/shadow.img"
  mount_fuse "$T/v.sock" "$T/file" $opts
  /usr/bin/python3 "$(dirname "$0")/random_io.py" "$T/file" "$T/shadow.img" 200 $RANDOM \
    || fail "random I/O with $opts"
  fio --name=verify --filename="$T/file" --direct=1 --ioengine=libaio \
      --iodepth=32 --rw=randwrite --bs=4k --size=8M --verify=crc32c \
      --verify_fatal=1 --verify_state_save=0 --fallocate=none \
      --output="$T/fio.out" || { cat "$T/fio.out"; fail "fio verify with $opts"; }
  unmount_fuse "$T/file" "$FUSE_PID"
  dd if="$T/disk.img" of="$T/shadow.img" bs=1M count=8 conv=notrunc status=none
  cmp "$T/disk.img" "$T/shadow.img" || fail "$opts: backing image differs"
done

# A backend without FLUSH, DISCARD and WRITE_ZEROES (switched off in the
# core): fsync and fdatasync succeed; punch hole and zero range, which
# vublk-fuse then serves by writing zeroes, read back zero (over 1 MiB
# pieces, unaligned, up to the end) and leave the bytes around them alone.
cp "$T/disk.img" "$T/shadow.img"
export VUBLK_TEST_DISABLE_FEATURES=$(( (1 << 9) | (1 << 13) | (1 << 14) ))
mount_fuse "$T/v.sock" "$T/file"
unset VUBLK_TEST_DISABLE_FEATURES
for r in "p 1000001 2500000" "z 7000003 4097" "p 9437184 4096" "z $((M - 5000)) 5000"; do
  set -- $r
  fallocate -"$1" -o "$2" -l "$3" "$T/file" || fail "fallocate -$1 -o $2 -l $3 without write-zeroes"
  cmp -n "$3" -i "$2:0" "$T/file" /dev/zero || fail "fallocate -$1 at $2 without write-zeroes: not zero"
  dd if=/dev/zero of="$T/shadow.img" bs=1 seek="$2" count="$3" conv=notrunc status=none
done
cmp "$T/file" "$T/shadow.img" || fail "zeroing without write-zeroes touched data outside the range"
head -c 8192 /dev/urandom >"$T/chunk"
dd if="$T/chunk" of="$T/file" bs=8192 seek=3 conv=notrunc,fsync status=none \
  || fail "dd conv=fsync without FLUSH"
dd if="$T/chunk" of="$T/shadow.img" bs=8192 seek=3 conv=notrunc status=none
/usr/bin/python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDWR); os.fsync(fd); os.fdatasync(fd)' "$T/file" \
  || fail "fsync/fdatasync without FLUSH"
# Writes each followed by fsync, for 4 s: a flush without FLUSH ends with
# no chunk in flight, the path on which ThreadSanitizer once found a race
# between the submitting thread and the completion thread.
/usr/bin/python3 - "$T/file" "$T/shadow.img" <<'PY' || fail "write+fsync loop without FLUSH"
import os, random, sys, time
f = os.open(sys.argv[1], os.O_RDWR)
shadow = os.open(sys.argv[2], os.O_RDWR)
rng = random.Random(7)
end, n = time.monotonic() + 4, 0
while time.monotonic() < end:
    off, data = rng.randrange(0, 1 << 20, 512), os.urandom(4096)
    os.pwrite(f, data, off)
    os.pwrite(shadow, data, off)
    os.fsync(f)
    n += 1
print(f"{n} writes, each with fsync")
PY
unmount_fuse "$T/file" "$FUSE_PID"
cmp "$T/disk.img" "$T/shadow.img" || fail "without write-zeroes: backing image differs"

# Writes and fallocate move the file's mtime and ctime (cp -u, rsync and
# make compare them); a time set with utimens holds until the next write.
mount_fuse "$T/v.sock" "$T/file"
/usr/bin/python3 - "$T/file" <<'PY' || fail "mtime and ctime after writes"
import os, sys, time
path = sys.argv[1]
os.utime(path, (1e9, 1e9))
assert os.stat(path).st_mtime == 1e9, os.stat(path).st_mtime
fd = os.open(path, os.O_RDWR)
data = os.pread(fd, 4096, 0)
start = time.time()
os.pwrite(fd, data, 0)
time.sleep(1.2)      # the kernel keeps attributes for up to a second
st = os.stat(path)
assert st.st_mtime >= start - 1 and st.st_ctime >= start - 1, (st.st_mtime, st.st_ctime, start)
os.utime(path, (1e9, 1e9))
assert os.stat(path).st_mtime == 1e9, "utimens after a write did not hold"
print("writes move mtime and ctime; utimens holds until the next write")
PY
fallocate -z -o 0 -l 4096 "$T/file"
sleep 1.2
(( $(stat -c %Y "$T/file") > 1000000000 )) || fail "fallocate did not move mtime"
dd if="$T/shadow.img" of="$T/file" bs=4096 count=1 conv=notrunc status=none
unmount_fuse "$T/file" "$FUSE_PID"
cmp "$T/disk.img" "$T/shadow.img" || fail "after the mtime checks: backing image differs"

# A 1 MiB pool: 1 MiB unaligned reads and writes, and many at once, still
# complete and match (the request buffers leave room for the library's
# bounce buffers and edge blocks).
mount_fuse "$T/v.sock" "$T/file" --pool-size 1M
timeout 60 /usr/bin/python3 - "$T/file" "$T/shadow.img" <<'PY' || fail "I/O with a 1 MiB pool (124: hung)"
import os, sys, threading
f, shadow = os.open(sys.argv[1], os.O_RDWR), os.open(sys.argv[2], os.O_RDWR)
assert os.pread(f, 1 << 20, 1) == os.pread(shadow, 1 << 20, 1), "1 MiB read at 1"
data = os.urandom(1 << 20)
os.pwrite(f, data, 4097)
os.pwrite(shadow, data, 4097)
def work(i):
    off = 3 + i * 1234567
    assert os.pread(f, 700000, off) == os.pread(shadow, 700000, off), f"read {i}"
t = [threading.Thread(target=work, args=(i,)) for i in range(16)]
for x in t: x.start()
for x in t: x.join()
print("1 MiB pool: unaligned 1 MiB reads and writes, 16 at once: ok")
PY
unmount_fuse "$T/file" "$FUSE_PID"
cmp "$T/disk.img" "$T/shadow.img" || fail "with a 1 MiB pool: backing image differs"

# Durable writes (O_SYNC, O_DSYNC, RWF_DSYNC) reach the backend with a
# flush in direct I/O mode, where the kernel sends no fsync after them: a
# backend whose flushes fail (blkdebug) fails them, and a plain write
# still succeeds.
rm -f "$T/fl.sock"
qemu-storage-daemon \
  --blockdev "driver=file,node-name=file0,filename=$T/disk.img,cache.direct=off" \
  --blockdev '{"driver":"blkdebug","node-name":"dbg","image":"file0","inject-error":[{"event":"none","iotype":"flush","errno":5}]}' \
  --blockdev "driver=raw,node-name=disk0,file=dbg" \
  --export "type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path=$T/fl.sock,writable=on" \
  >"$T/qsd.fl.log" 2>&1 &
FL_PID=$!
on_exit "kill -9 $FL_PID; wait $FL_PID"
wait_for_socket "$T/fl.sock"
mount_fuse "$T/fl.sock" "$T/file"
/usr/bin/python3 - "$T/file" <<'PY' || fail "durable writes through vublk-fuse"
import errno, os, sys
def fails_eio(what, fn):
    try:
        fn()
    except OSError as e:
        if e.errno == errno.EIO:
            return
        sys.exit(f"{what}: {e}, not EIO")
    sys.exit(f"{what} succeeded: no flush reached the backend")
plain = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(plain, b"p" * 4096, 0)
for name, flag in (("O_DSYNC", os.O_DSYNC), ("O_SYNC", os.O_SYNC)):
    fd = os.open(sys.argv[1], os.O_WRONLY | flag)
    fails_eio(f"a write on an {name} file", lambda: os.pwrite(fd, b"s" * 4096, 4096))
    os.close(fd)
fails_eio("a write with RWF_DSYNC",
          lambda: os.pwritev(plain, [b"r" * 4096], 8192, os.RWF_DSYNC))
os.pwrite(plain, b"q" * 4096, 12288)
print("durable writes flush, plain writes do not")
PY
unmount_fuse "$T/file" "$FUSE_PID"
kill "$FL_PID"; wait "$FL_PID" 2>/dev/null || true

# A file system on the file.
if command -v mkfs.ext4 >/dev/null; then
  mount_fuse "$T/v.sock" "$T/file"
  mkfs.ext4 -q -F "$T/file" || fail "mkfs.ext4"
  e2fsck -fn "$T/file" >/dev/null || fail "e2fsck"
  unmount_fuse "$T/file" "$FUSE_PID"
  e2fsck -fn "$T/disk.img" >/dev/null || fail "e2fsck of the backing image"
fi
echo "PASS"
