#!/usr/bin/env bash
# scripts/demo, as a new user runs it: with its own qemu-storage-daemon
# (mkfs, qemu-img through vublk-fuse and nbdkit, writes over NBD), and
# with a SOCKET of the user's, a 1.5 GiB disk, of which only the first GiB
# is copied out, and the disk is left unwritten.  The demo builds and
# uses the tree's build/, so this runs in the plain pass only.
. "$(dirname "$0")/lib.sh"
requires qemu-storage-daemon qemu-img nbdkit nbdinfo fusermount3 mkfs.ext4 cmp
top=$(cd "$(dirname "$0")/../.." && pwd)
if [[ $(realpath "$VUBLK_BUILD") != "$(realpath "$top/build")" ]]; then
  echo "SKIP: scripts/demo builds and runs $top/build, not $VUBLK_BUILD" >&2
  exit 77
fi

timeout 300 "$top/scripts/demo" >"$T/own.out" 2>&1 \
  || fail "scripts/demo: exit $?: $(tail -15 "$T/own.out")"
for want in "Images are identical." "Pass 5: Checking group summary" \
            "Everything started here is stopped now."; do
  grep -qF "$want" "$T/own.out" || fail "scripts/demo: no '$want': $(tail -15 "$T/own.out")"
done
echo "ok: scripts/demo with its own qemu-storage-daemon"

# The user's backend: 1.5 GiB, with data in the first GiB and past it.
truncate -s 1536M "$T/user.img"
make_random_image "$T/data" 1M
dd if="$T/data" of="$T/user.img" bs=1M seek=100 conv=notrunc status=none
dd if="$T/data" of="$T/user.img" bs=1M seek=1200 conv=notrunc status=none
cp --sparse=always "$T/user.img" "$T/user.orig"
start_qsd "$T/user.img" "$T/user.sock"
# A relative SOCKET, as typed in the directory it lives in.
(cd "$T" && timeout 300 "$top/scripts/demo" user.sock) >"$T/user.out" 2>&1 \
  || fail "scripts/demo SOCKET: exit $?: $(tail -15 "$T/user.out")"
grep -qF "(the disk is 1536 MiB: copying its first 1024 MiB)" "$T/user.out" \
  || fail "scripts/demo SOCKET: did not limit the copy: $(grep -i copying "$T/user.out")"
grep -qF "Images are identical." "$T/user.out" \
  || fail "scripts/demo SOCKET: the two copies differ: $(tail -15 "$T/user.out")"
cmp "$T/user.img" "$T/user.orig" || fail "scripts/demo SOCKET wrote to the user's disk"
echo "ok: scripts/demo SOCKET: first GiB of a 1.5 GiB disk, the disk unwritten"
echo PASS
