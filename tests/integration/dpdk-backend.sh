#!/usr/bin/env bash
# Every frontend against DPDK's vhost-user-blk example backend (rte_vhost,
# the library SPDK's vhost target is built on; built by the test from
# Debian's dpdk-doc): vublk info (one queue: the backend offers no MQ),
# vublk copy both ways, vublk bench random writes and reads, the core's
# shadow-checked random I/O (vublk_stress), the driven-queue probes and
# 32 requests kept in flight by callbacks (vublk_depth),
# vublk-fuse (two loop threads) with fio verification, mkfs.ext4 and
# e2fsck, nbdkit vhostuser with qemu-img convert both ways and nbdcopy
# over four connections.  Then kill -9 of the backend during writes and a
# restart in the same directory: no hang, no error, new writes land; the
# backend frozen (SIGSTOP) past the request timeout; a client killed in
# mid-I/O and the next one served.
# Once with the backend on hugepages.  For split and packed rings when
# vublk has --ring.
#
# The example's habits this checks the client tolerates: it serves queue 0
# only (config num_queues 256, GET_QUEUE_NUM 128, no VIRTIO_BLK_F_MQ); it
# reports the used length of every split-ring request as the data length
# (4096 for a 4 KiB write, one byte short for a read) and never writes it
# in the packed ring; it fails GET_ID and FLUSH with IOERR; it busy-polls
# one core while a client is connected.  It takes one client at a time, so
# no step here overlaps another.
. "$(dirname "$0")/lib.sh"
requires timeout cmp stdbuf
STRESS=$VUBLK_TESTS/vublk_stress
D=$T/dpdk
S=$D/vhost.socket
DEV_SIZE=$((128 << 20))          # the example's hard-wired RAM disk
OPTS=(--request-timeout 5 --reconnect-timeout 15)

dpdk_blk_binary                  # skip (77) before anything else if absent

# bounded LIMIT WHAT CMD...: runs CMD with output in $T/out; fails the test
# naming WHAT if it hangs past LIMIT seconds or exits non-zero.
bounded() {
  local limit=$1 what=$2 rc=0; shift 2
  timeout -k 5 "$limit" "$@" >"$T/out" 2>&1 || rc=$?
  ((rc != 124 && rc != 137)) || fail "$what: hung past ${limit}s: $(tail -5 "$T/out")"
  ((rc == 0)) || fail "$what: exit $rc: $(tail -5 "$T/out")"
}

# fresh_backend [huge]: a new example process, so a zeroed RAM disk.
fresh_backend() {
  [[ -n ${DPDK_PID:-} ]] && kill_dpdk_blk
  start_dpdk_blk "$D" "$@"
}

# device_equals FILE WHAT: reads the whole device and compares with FILE.
device_equals() {
  bounded 60 "$2: read back" "$VUBLK_BIN" copy "${OPTS[@]}" "${RING[@]}" \
    "vhost-user:$S" "$T/back"
  cmp "$1" "$T/back" || fail "$2: the device differs from what was written"
}

# device_equals_prefix FILE WHAT: the device starts with FILE's bytes.
device_equals_prefix() {
  bounded 60 "$2: read back" "$VUBLK_BIN" copy "${OPTS[@]}" "${RING[@]}" \
    "vhost-user:$S" "$T/back"
  cmp -n "$(stat -c %s "$1")" "$1" "$T/back" || fail "$2: the device differs from what was written"
}

# start_slow_copy N OPTION...: vublk copy -v OPTION... from stdin to the
# device in the background (COPY its pid, its output in $T/copy.out), fed
# the first N MiB of $T/data, 1 MiB every ~50 ms; each MiB fed is counted
# in $T/fed (renamed into place whole, so a reader never sees it half
# written; removed first, so wait_fed never reads an earlier count).
start_slow_copy() {
  local n=$1
  shift
  rm -f "$T/fed"
  (for ((i = 0; i < n; i++)); do
     dd if="$T/data" bs=1M skip=$i count=1 status=none
     echo "$i" >"$T/fed.new" && mv "$T/fed.new" "$T/fed"
     sleep 0.05
   done) | "$VUBLK_BIN" copy -v "$@" - "vhost-user:$S" >"$T/copy.out" 2>&1 &
  COPY=$!
  on_exit "kill -9 $COPY"
}

# wait_fed N WHAT: waits up to 15 s until a feeder has written N (MiB
# fed) to $T/fed, which it renames into place whole; fails naming WHAT,
# with what copy and the backend said, if not.
wait_fed() {
  local want=$1 fed=0 i
  for ((i = 0; i < 300; i++)); do
    fed=$(cat "$T/fed" 2>/dev/null || true)
    [[ $fed =~ ^[0-9]+$ ]] || fed=0
    ((fed >= want)) && return 0
    sleep 0.05
  done
  fail "$2: $fed MiB fed in 15 s; copy said: $(tail -5 "$T/copy.out");" \
       "backend: $(tail -5 "$D/dpdk.log")"
}

# Which rings to test: both once vublk has --ring, else its only one.
if "$VUBLK_BIN" info --help 2>&1 | grep -q -- "--ring"; then
  RINGS=(split packed)
else
  RINGS=(default)
fi

run_ring() {
  local ring=$1
  RING=() PLUGIN_RING=() STRESS_RING=()
  if [[ $ring != default ]]; then
    RING=(--ring "$ring") PLUGIN_RING=(ring="$ring")
    # vublk_stress learns --ring separately from vublk.
    local probe
    probe=$("$STRESS" "$T/none.sock" /dev/null --ring "$ring" 2>&1 || true)
    [[ $probe == *"unknown option"* ]] || STRESS_RING=(--ring "$ring")
  fi
  echo "--- ring: $ring"

  # info: one queue in use (no MQ), the ring in use when it says.
  fresh_backend
  bounded 20 "info" "$VUBLK_BIN" info "${RING[@]}" "$S"
  cp "$T/out" "$T/info"
  grep -Eq "^queues: +1 in use" "$T/info" \
    || fail "info: expected 1 queue in use without VIRTIO_BLK_F_MQ: $(grep queues "$T/info")"
  grep -Eq "^size: +$DEV_SIZE bytes" "$T/info" || fail "info: size: $(grep size "$T/info")"
  # What the example does not report is said, not shown as 0 or blank.
  for f in "min/opt I/O size" "max segments" "serial"; do
    grep -Eq "^$f: +not reported" "$T/info" || fail "info: $(grep "^$f:" "$T/info")"
  done
  if grep -q "^ring:" "$T/info" && [[ $ring != default ]]; then
    grep -Eq "^ring: +$ring" "$T/info" || fail "info: $(grep '^ring:' "$T/info"), wanted $ring"
  fi
  echo "ok: info -> $(grep -E '^(queues|ring):' "$T/info" | tr -s ' ' | paste -sd ';')"

  # copy both ways.
  make_random_image "$T/data" 16M
  bounded 60 "copy to the device" "$VUBLK_BIN" copy "${OPTS[@]}" "${RING[@]}" \
    "$T/data" "vhost-user:$S"
  bounded 60 "copy from the device" "$VUBLK_BIN" copy "${OPTS[@]}" "${RING[@]}" \
    "vhost-user:$S" "$T/back"
  [[ $(stat -c %s "$T/back") == "$DEV_SIZE" ]] || fail "copy: read $(stat -c %s "$T/back") bytes"
  cmp -n $((16 << 20)) "$T/data" "$T/back" || fail "copy: data differs"
  cmp -i $((16 << 20)):0 -n $((DEV_SIZE - (16 << 20))) "$T/back" /dev/zero \
    || fail "copy: the rest of the disk is not zero"
  echo "ok: vublk copy 16 MiB both ways"
  # A sparse file over that data: with no WRITE_ZEROES offered, its holes
  # go as writes of zeroes (copy skips reading them).
  rm -f "$T/sparse"
  truncate -s $((16 << 20)) "$T/sparse"
  head -c 1048576 /dev/urandom | dd of="$T/sparse" bs=1 seek=$((3 << 20)) conv=notrunc status=none
  bounded 60 "copy a sparse file to the device" "$VUBLK_BIN" copy "${OPTS[@]}" "${RING[@]}" \
    "$T/sparse" "vhost-user:$S"
  bounded 60 "copy the sparse file back" "$VUBLK_BIN" copy "${OPTS[@]}" "${RING[@]}" \
    "vhost-user:$S" "$T/back"
  cmp -n $((16 << 20)) "$T/sparse" "$T/back" || fail "copy of a sparse file: data differs"
  echo "ok: vublk copy of a sparse file: holes written as zeroes"

  # bench: random writes and reads at QD32, no errors.
  for rw in randwrite randread; do
    bounded 30 "bench $rw" "$VUBLK_BIN" bench "${OPTS[@]}" "${RING[@]}" --rw "$rw" \
      --qd 32 --time 2 "$S"
    grep -q "errors:" "$T/out" && fail "bench $rw: $(cat "$T/out")"
    echo "ok: bench $rw: $(grep -i iops "$T/out" | head -1)"
  done

  # Callbacks keeping 32 requests in flight on a driven queue, every
  # block checked: polling (resubmissions published every 8 completions)
  # and sleeping.
  for mode in --poll ""; do
    # shellcheck disable=SC2086  # "" or --poll
    bounded 60 "vublk_depth $mode" "$VUBLK_TESTS/vublk_depth" "$S" $mode \
      --qd 32 --rounds 100 "${RING[@]}"
  done
  echo "ok: vublk_depth, 32 in flight polling and sleeping, every block matched"

  # The driven-queue checks of core-io.sh, on a backend with one queue:
  # the caller's claim takes the only one.
  local probe
  for probe in close-wakes idle-owner pool-starved all-driven zero-length \
               "claim-race 50"; do
    # shellcheck disable=SC2086  # "claim-race 50": mode and rounds
    VUBLK_PROBE_RING=${RING[1]:-} bounded 60 "driven_probe $probe" \
      "$VUBLK_TESTS/driven_probe" ${probe%% *} "$S" ${probe#"${probe%% *}"}
  done
  echo "ok: driven_probe close-wakes, idle-owner, pool-starved, all-driven," \
       "zero-length, claim-race"

  # The core's shadow-checked random I/O on a fresh (zeroed) disk.
  fresh_backend
  truncate -s "$DEV_SIZE" "$T/shadow"
  bounded 120 "vublk_stress" "$STRESS" "$S" "$T/shadow" --threads 2 --ops 600 \
    --seed 12 --reconnect-timeout 15 "${STRESS_RING[@]}"
  device_equals "$T/shadow" "vublk_stress"
  echo "ok: vublk_stress, device equals the shadow"
  rm -f "$T/shadow"

  # nbdkit vhostuser + qemu-img convert both ways.
  if command -v nbdkit >/dev/null && command -v qemu-img >/dev/null \
     && ! plugin_is_instrumented; then
    make_random_image "$T/img" 128M
    start_nbdkit dpdk "$VUBLK_PLUGIN" socket="$S" request-timeout=5 \
      reconnect-timeout=15 "${PLUGIN_RING[@]}"
    local uri="nbd+unix:///?socket=$T/dpdk.nbd"
    kill -0 "$NBDKIT_PID" 2>/dev/null || fail "nbdkit exited: $(cat "$T/dpdk.log")"
    bounded 90 "qemu-img convert into nbdkit" qemu-img convert -n -f raw -O raw \
      "$T/img" "$uri"
    bounded 90 "qemu-img convert out of nbdkit" qemu-img convert -f raw -O qcow2 \
      "$uri" "$T/img.qcow2"
    # Four connections at once, sharing the example's single queue.
    bounded 90 "nbdcopy out of nbdkit, 4 connections" nbdcopy --connections=4 \
      "$uri" "$T/img.nbdcopy"
    stop_nbdkit
    bounded 60 "qemu-img compare" qemu-img compare -f raw -F qcow2 "$T/img" "$T/img.qcow2"
    cmp "$T/img" "$T/img.nbdcopy" || fail "nbdcopy with 4 connections read other data"
    device_equals "$T/img" "nbdkit"
    rm -f "$T/img" "$T/img.qcow2" "$T/img.nbdcopy"
    echo "ok: nbdkit vhostuser, qemu-img convert both ways, nbdcopy with 4 connections"
  fi

  # vublk-fuse: fio with verification, then mkfs.ext4 and e2fsck.
  if [[ -x $VUBLK_FUSE_BIN ]] && command -v fusermount3 >/dev/null \
     && command -v fio >/dev/null; then
    touch "$T/file"
    # Two FUSE loop threads and two fio jobs (8 MiB each): one loop thread
    # drives the example's only queue, the other's requests go to it too.
    mount_fuse "$S" "$T/file" "${OPTS[@]}" "${RING[@]}" --threads 2
    timeout 120 fio --name=verify --filename="$T/file" --direct=1 --ioengine=libaio \
      --iodepth=32 --rw=randwrite --bsrange=4k-128k --size=8M --numjobs=2 \
      --offset_increment=8M \
      --verify=crc32c --verify_fatal=1 --verify_state_save=0 --fallocate=none \
      --output="$T/fio.out" || { cat "$T/fio.out"; fail "fio verify through vublk-fuse"; }
    grep -q "err= 0" "$T/fio.out" && ! grep -Eq "err= *[1-9]" "$T/fio.out" \
      || { cat "$T/fio.out"; fail "fio reported errors"; }
    if command -v mkfs.ext4 >/dev/null; then
      bounded 120 "mkfs.ext4" mkfs.ext4 -q -F "$T/file"
      bounded 60 "e2fsck" e2fsck -fn "$T/file"
    fi
    unmount_fuse "$T/file" "$FUSE_PID"
    if command -v e2fsck >/dev/null; then
      bounded 60 "copy out" "$VUBLK_BIN" copy "${OPTS[@]}" "${RING[@]}" \
        "vhost-user:$S" "$T/back"
      bounded 60 "e2fsck of the device" e2fsck -fn "$T/back"
    fi
    echo "ok: vublk-fuse (2 threads): fio verify (2 jobs), mkfs.ext4, e2fsck"
  fi

  # kill -9 during QD32 random writes, restart in the same directory: the
  # bench reconnects, resubmits and ends without an error.
  local ready
  ready=$(grep -c "virtio is now ready" "$D/dpdk.log")
  "$VUBLK_BIN" bench "${OPTS[@]}" "${RING[@]}" --rw randwrite --qd 32 --time 5 "$S" \
    >"$T/bench.out" 2>&1 &
  local bench=$!
  on_exit "kill -9 $bench"
  # Kill once the bench is connected and writing.
  for ((i = 0; i < 300; i++)); do
    [[ $(grep -c "virtio is now ready" "$D/dpdk.log") -gt $ready ]] && break
    sleep 0.05
  done
  sleep 1
  kill_dpdk_blk
  sleep 0.5
  start_dpdk_blk "$D"
  local rc=0
  timeout 40 tail --pid=$bench -f /dev/null || fail "bench: hung after the backend restart"
  wait $bench || rc=$?
  ((rc == 0)) || fail "bench across kill -9 and restart: exit $rc: $(cat "$T/bench.out")"
  grep -q "errors:" "$T/bench.out" && fail "bench across restart: $(cat "$T/bench.out")"
  grep -q "reconnects:" "$T/bench.out" || fail "bench did not reconnect: $(cat "$T/bench.out")"
  echo "ok: kill -9 during bench randwrite -> $(grep reconnects: "$T/bench.out")"

  # kill -9 during a sequential copy fed slowly (64 x 1 MiB over ~3 s): the
  # RAM disk of the killed process is gone, so every sector reads back as
  # either what was written or zero, and everything written after the
  # restart (the last 8 MiB at least) landed.
  make_random_image "$T/data" 64M
  fresh_backend
  start_slow_copy 64 "${OPTS[@]}" "${RING[@]}"
  local copy=$COPY
  # The copy keeps 8 MiB ahead of its writes: after 20 MiB fed, 12 are
  # written.  (The example accepts its first client up to ~1 s late.)
  wait_fed 20 "copy from a pipe"
  kill_dpdk_blk
  sleep 0.5
  start_dpdk_blk "$D"
  timeout 40 tail --pid=$copy -f /dev/null || fail "copy: hung after the backend restart"
  rc=0
  wait $copy || rc=$?
  ((rc == 0)) || fail "copy across kill -9 and restart: exit $rc: $(cat "$T/copy.out")"
  bounded 60 "read back after restart" "$VUBLK_BIN" copy "${OPTS[@]}" "${RING[@]}" \
    "vhost-user:$S" "$T/back"
  /usr/bin/python3 - "$T/data" "$T/back" <<'PY' || fail "data after the restart"
import sys
src = open(sys.argv[1], "rb").read()
dev = open(sys.argv[2], "rb").read()[:len(src)]
zero = bytes(512)
for off in range(0, len(src), 512):
    s, d = src[off:off + 512], dev[off:off + 512]
    if d != s and d != zero:
        sys.exit(f"sector at {off} is neither the data nor zero")
tail = 8 << 20
if dev[-tail:] != src[-tail:]:
    sys.exit("the last 8 MiB, written after the restart, did not land")
print(f"{sum(dev[o:o+512] == src[o:o+512] for o in range(0, len(src), 512))}"
      f" of {len(src) // 512} sectors landed")
PY
  # New writes after the restart land and read back.
  make_random_image "$T/data" 16M
  bounded 60 "copy after restart" "$VUBLK_BIN" copy "${OPTS[@]}" "${RING[@]}" \
    "$T/data" "vhost-user:$S"
  device_equals_prefix "$T/data" "new writes after the restart"
  echo "ok: kill -9 during a copy -> no hang, no error, new writes land"

  # The backend frozen (SIGSTOP) during a copy fed slowly (32 x 1 MiB
  # over ~2 s), until a write the copy submitted meanwhile has gone
  # unanswered past the request timeout: the copy reconnects to the same
  # process once it runs again, resubmits, and everything lands.
  make_random_image "$T/data" 32M
  fresh_backend
  start_slow_copy 32 --request-timeout 1 --reconnect-timeout 15 "${RING[@]}"
  copy=$COPY
  # Frozen once 12 MiB are fed: 20 are still to come.
  wait_fed 12 "frozen backend"
  kill -0 "$copy" 2>/dev/null || fail "frozen backend: the copy ended early: $(tail -5 "$T/copy.out")"
  kill -STOP "$DPDK_PID"
  for ((i = 0; i < 300; i++)); do
    grep -q "got no answer" "$T/copy.out" && break
    sleep 0.05
  done
  kill -CONT "$DPDK_PID"
  grep -q "got no answer" "$T/copy.out" \
    || fail "frozen backend: no write timed out in 15 s: $(tail -5 "$T/copy.out")"
  timeout 40 tail --pid=$copy -f /dev/null || fail "copy: hung after the backend was frozen"
  rc=0
  wait $copy || rc=$?
  ((rc == 0)) || fail "copy across a frozen backend: exit $rc: $(tail -5 "$T/copy.out")"
  grep -q "reconnected" "$T/copy.out" \
    || fail "copy across a frozen backend: no reconnect: $(tail -5 "$T/copy.out")"
  device_equals_prefix "$T/data" "frozen backend"
  echo "ok: SIGSTOP past the request timeout during a copy -> reconnected, data intact"
}

for ring in "${RINGS[@]}"; do
  run_ring "$ring"
done

# A client killed with -9 in mid-I/O: the next client, on the default
# ring layout (split), is served.  (With packed rings it is not: the
# example keeps the killed client's wrap lap and never answers the next
# one; that is why split is the default.)
fresh_backend
"$VUBLK_BIN" bench --rw randwrite --qd 32 --time 5 "$S" >/dev/null 2>&1 &
victim=$!
on_exit "kill -9 $victim"
sleep 1.5
kill -0 "$victim" 2>/dev/null || fail "the client to kill ended early"
kill -9 "$victim"; wait "$victim" 2>/dev/null || true
bounded 30 "bench after a client was killed" "$VUBLK_BIN" bench --request-timeout 2 \
  --reconnect-timeout 3 --rw randread --qd 4 --time 1 "$S"
grep -q "errors:" "$T/out" && fail "bench after a client was killed: $(cat "$T/out")"
echo "ok: a client killed with -9; the next one (default ring) is served"

# The backend on 2 MiB hugepages (as SPDK runs): copy both ways and the
# shadow-checked random I/O; the client's pool on hugepages too when
# vublk has --memory.
kill_dpdk_blk
MEM=()
need=80
if "$VUBLK_BIN" copy --help 2>&1 | grep -q -- "--memory"; then
  MEM=(--memory hugetlb)
  need=$((need + 32))
fi
reserve_hugepages "$need"
RING=()
start_dpdk_blk "$D" huge
make_random_image "$T/data" 16M
bounded 60 "hugepages: copy to the device" "$VUBLK_BIN" copy "${OPTS[@]}" "${MEM[@]}" \
  "$T/data" "vhost-user:$S"
bounded 60 "hugepages: copy from the device" "$VUBLK_BIN" copy "${OPTS[@]}" "${MEM[@]}" \
  "vhost-user:$S" "$T/back"
cmp -n $((16 << 20)) "$T/data" "$T/back" || fail "hugepages: data differs"
fresh_backend huge
truncate -s "$DEV_SIZE" "$T/shadow"
bounded 120 "hugepages: vublk_stress" "$STRESS" "$S" "$T/shadow" --threads 2 \
  --ops 400 --seed 13 --reconnect-timeout 15
device_equals "$T/shadow" "hugepages: vublk_stress"
echo "ok: backend on hugepages${MEM:+ and client on hugepages}: copy, vublk_stress"
echo PASS
