#!/usr/bin/env bash
# Shared mmap of the vublk-fuse file with default options (direct I/O for
# read and write): mmap_check maps the file MAP_SHARED and mixes stores
# into the map, msync, pwrite, pread and loads from the map at random,
# checking every read against a shadow copy and finally the whole file
# read with O_DIRECT.  After unmount the image qemu-storage-daemon serves
# must equal the shadow.  The same run with --cache (the page cache).
. "$(dirname "$0")/lib.sh"
requires qemu-storage-daemon fusermount3 cmp
: "${VUBLK_TESTS:?VUBLK_TESTS must name the tests build directory}"
CHECK=$VUBLK_TESTS/mmap_check
[[ -x $CHECK ]] || fail "$CHECK is not built"

make_random_image "$T/disk.img" 16M
start_qsd "$T/disk.img" "$T/v.sock"
touch "$T/file"

for opts in "" "--cache"; do
  seed=${MMAP_CHECK_SEED:-$RANDOM$RANDOM}
  mount_fuse "$T/v.sock" "$T/file" $opts
  timeout 120 "$CHECK" "$T/file" "$seed" 3000 "$T/shadow.img" \
    || fail "mmap_check ${opts:-(default options)} failed (seed $seed)"
  unmount_fuse "$T/file" "$FUSE_PID"
  cmp "$T/disk.img" "$T/shadow.img" \
    || fail "${opts:-default options}: the backing image differs from the shadow (seed $seed)"
  echo "ok: mmap ${opts:-with default options} (seed $seed)"
done
echo PASS
