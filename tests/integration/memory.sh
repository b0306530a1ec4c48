#!/usr/bin/env bash
# Memory does not grow with the device: vublk-fuse and nbdkit vhostuser
# use the same resident memory for a 1 GiB image and a 1 TiB sparse one
# (after reading at its start and at its end).
. "$(dirname "$0")/lib.sh"
requires qemu-storage-daemon fusermount3
truncate -s 1G "$T/small.img"
truncate -s 1T "$T/big.img"
start_qsd "$T/small.img" "$T/small.sock"
start_qsd "$T/big.img" "$T/big.sock"
# rss_kib PID: the resident KiB PID keeps, the smallest of ten readings
# over a second.  A reading taken just after the client has its reply can
# still count the request's buffer, which the server frees only after
# sending that reply (seen: nbdkit +16 MiB in 2 runs of 12).
rss_kib() {
  local min="" kib i
  for i in 1 2 3 4 5 6 7 8 9 10; do
    kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status")
    [[ -z $min ]] || ((kib < min)) && min=$kib
    sleep 0.1
  done
  echo "$min"
}

# fuse_rss SOCKET SIZE: mounts SOCKET, reads 16 MiB at the start and at
# the end of the file, and sets RSS to vublk-fuse's resident KiB.
fuse_rss() {
  local sock=$1 size=$2 mnt=$T/f.$(basename "$1")
  touch "$mnt"
  mount_fuse "$sock" "$mnt"
  dd if="$mnt" of=/dev/null bs=1M count=16 iflag=direct status=none
  dd if="$mnt" of=/dev/null bs=1M skip=$((size / 1048576 - 16)) count=16 iflag=direct status=none
  RSS=$(rss_kib "$FUSE_PID")
  unmount_fuse "$mnt" "$FUSE_PID"
}
fuse_rss "$T/small.sock" $((1 << 30)); small=$RSS
fuse_rss "$T/big.sock" $((1 << 40)); big=$RSS
echo "vublk-fuse VmRSS: 1 GiB image ${small} KiB, 1 TiB image ${big} KiB"
((big <= small + small / 10 + 1024)) || fail "vublk-fuse uses more memory for 1 TiB ($big KiB) than 1 GiB ($small KiB)"

if command -v nbdkit >/dev/null && command -v nbdsh >/dev/null && ! plugin_is_instrumented; then
  # nbdkit mallocs a 16 MiB buffer per request.  glibc's dynamic mmap
  # threshold could keep such a freed buffer in whichever thread's arena
  # served it, so RSS would tell which worker ran the request, not what
  # the plugin keeps.  A fixed threshold returns every large buffer to the
  # kernel at free().
  export MALLOC_MMAP_THRESHOLD_=131072 MALLOC_TRIM_THRESHOLD_=131072
  # plugin_rss SOCKET SIZE: the same through nbdkit vhostuser and nbdsh.
  plugin_rss() {
    local sock=$1 size=$2 name
    name=$(basename "$sock")
    start_nbdkit "$name" "$VUBLK_PLUGIN" socket="$sock"
    /usr/bin/nbdsh -u "nbd+unix:///?socket=$T/$name.nbd" \
      -c "h.pread(16 << 20, 0)" -c "h.pread(16 << 20, $size - (16 << 20))"
    RSS=$(rss_kib "$NBDKIT_PID")
    stop_nbdkit
  }
  plugin_rss "$T/small.sock" $((1 << 30)); small=$RSS
  plugin_rss "$T/big.sock" $((1 << 40)); big=$RSS
  echo "nbdkit vhostuser VmRSS: 1 GiB image ${small} KiB, 1 TiB image ${big} KiB"
  ((big <= small + small / 10 + 1024)) || fail "plugin uses more memory for 1 TiB ($big KiB) than 1 GiB ($small KiB)"
fi
echo PASS
