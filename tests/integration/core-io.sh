#!/usr/bin/env bash
# libvublk against qemu-storage-daemon: random multi-threaded I/O of random
# sizes and offsets checked byte for byte against a shadow file, for 512 B
# and 4096 B logical blocks and 1 and 4 queues; then the backing image is
# compared with the shadow.  Also plugged submission, spinning
# (vublk_aio_spin), driven queues meeting vublk_close, threads claiming
# queues at once and an owner that stops processing for a while, driven
# queues kept 32 deep by their callbacks (polling and sleeping), a pool
# held whole by the caller, and a read-only export refusing writes.
. "$(dirname "$0")/lib.sh"
requires qemu-storage-daemon cmp
STRESS=$VUBLK_TESTS/vublk_stress

run_case() {
  local blk=$1 queues=$2 seed=$3; shift 3
  local img=$T/disk-$blk-$queues.img sock=$T/vhost-$blk-$queues.sock
  make_random_image "$img" 16M
  cp "$img" "$T/shadow"
  start_qsd "$img" "$sock" num-queues=$queues logical-block-size=$blk
  timeout 120 "$STRESS" "$sock" "$T/shadow" --threads 4 --ops 1500 \
    --seed "$seed" --queues "$queues" "$@" \
    || fail "stress blk=$blk queues=$queues $* (exit $?; 124: hung)"
  kill "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true
  cmp "$img" "$T/shadow" || fail "backing image differs (blk=$blk queues=$queues)"
  echo "blk=$blk queues=$queues $*: ok"
}

run_case 512 1 1
run_case 512 4 2
run_case 4096 1 3
run_case 4096 4 4
# Adaptive polling instead of sleeping on the call eventfd.
run_case 512 2 5 --poll
# Synchronous calls spinning for their own completions (spin_us); one
# thread so that it really spins (at most two requests in flight).
run_case 4096 2 8 --spin 50 --threads 1
run_case 512 1 9 --spin 50
# Run to completion: each thread drives a queue of its own (vublk_tq_*)
# and its synchronous calls complete on it; then the library claiming
# queues per thread, with more threads than queues (two share).
run_case 4096 4 10 --driven
run_case 512 2 11 --thread-queues --spin 20
# Driven, without FLUSH: a flush then completes with no request on the
# ring, and the driving thread must still see it.
VUBLK_TEST_DISABLE_FEATURES=$((1 << 9)) run_case 4096 2 12 --driven --threads 2
# SET_MEM_TABLE instead of ADD_MEM_REG.
VUBLK_FORCE_MEM_TABLE=1 run_case 4096 1 6
# Fixed three-descriptor chains (no INDIRECT_DESC, bit 28) and the
# NO_NOTIFY/NO_INTERRUPT flags instead of EVENT_IDX (bit 29).
VUBLK_TEST_DISABLE_FEATURES=0x30000000 run_case 512 2 7

# Plugged submission: small requests wait for unplug, large ones go at once.
make_random_image "$T/plug.img" 4M
start_qsd "$T/plug.img" "$T/plug.sock"
"$VUBLK_TESTS/vublk_probe" plug "$T/plug.sock" || fail "plug check"
echo "plug: small requests batched until unplug, 1 MiB sent at once: ok"
# Spinning: completions on the caller's thread, notifications back after.
"$VUBLK_TESTS/vublk_probe" spin "$T/plug.sock" || fail "spin check"
# The library's threads block signals whatever the caller's mask.
"$VUBLK_TESTS/vublk_probe" signals "$T/plug.sock" || fail "signals check"
# Run to completion at depth, callbacks resubmitting with 32 in flight on
# one driven queue, every block checked: busy polling (resubmissions
# published every 8 completions), polling at a depth below that
# batching, and sleeping on the call eventfd; also without EVENT_IDX.
for args in "--poll --qd 32" "--poll --qd 8" "--qd 32"; do
  timeout 60 "$VUBLK_TESTS/vublk_depth" "$T/plug.sock" $args \
    || fail "vublk_depth $args (exit $?; 124: hung)"
done
VUBLK_TEST_DISABLE_FEATURES=$((1 << 29)) timeout 60 \
  "$VUBLK_TESTS/vublk_depth" "$T/plug.sock" --poll --qd 32 \
  || fail "vublk_depth --poll --qd 32 without EVENT_IDX (exit $?; 124: hung)"
kill "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true
echo "spin: completions on the spinning thread, notifications restored: ok"

# Driven queues: vublk_close wakes a thread waiting on its queue (with no
# timeout and with the largest one, which must not turn into a busy
# loop); threads claiming queues at once leave one for the others.
start_qsd "$T/plug.img" "$T/driven.sock" num-queues=3
timeout 60 "$VUBLK_TESTS/driven_probe" close-wakes "$T/driven.sock" \
  || fail "vublk_close and a waiting driven queue"
timeout 120 "$VUBLK_TESTS/driven_probe" claim-race "$T/driven.sock" 300 \
  || fail "threads claiming queues at once"
# An owner that does not process for longer than the request timeout:
# its answers wait in the ring, the backend is not reconnected.
timeout 60 "$VUBLK_TESTS/driven_probe" idle-owner "$T/driven.sock" \
  || fail "an idle driving thread's answers taken for a hung backend"
# A pool the caller holds whole: a request needing a bounce buffer fails
# with ENOMEM after the request timeout instead of waiting for ever.
timeout 60 "$VUBLK_TESTS/driven_probe" pool-starved "$T/driven.sock" \
  || fail "a request starved of pool memory"
# Every queue driven: an owner's vublk_aio_submit request goes to its own
# queue, not to an idle owner's.
timeout 60 "$VUBLK_TESTS/driven_probe" all-driven "$T/driven.sock" \
  || fail "a request of an owner with every queue driven"
# Zero-byte writes and write-zeroes at an unaligned offset change nothing.
timeout 60 "$VUBLK_TESTS/driven_probe" zero-length "$T/driven.sock" \
  || fail "zero-length requests at an unaligned offset"
# An event loop's thread polls with up to 8 requests in flight, not with
# more (the backend stopped, so the depth holds still).
timeout 60 "$VUBLK_TESTS/driven_probe" spin-bound "$T/driven.sock" "$QSD_PID" \
  || { kill -CONT "$QSD_PID"; fail "vublk_tq_spin's depth bound"; }
kill "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true

# A read-only export: reads work, every write fails with EROFS.
make_random_image "$T/ro.img" 4M
start_qsd "$T/ro.img" "$T/ro.sock" writable=off
"$STRESS" "$T/ro.sock" /dev/null --readonly-check || fail "read-only check"
echo "all core I/O checks passed"
