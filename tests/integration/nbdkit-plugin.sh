#!/usr/bin/env bash
# nbdkit vhostuser against qemu-storage-daemon: nbdinfo, qemu-img convert
# and compare, nbdcopy in and out (four readers at once), zero and trim,
# flush, TCP on 127.0.0.1, read-only (nbdkit -r and a read-only export),
# fio's nbd engine with verification, capabilities of a backend without
# flush/discard/write-zeroes, --dump-plugin and a bad socket (more
# start-up failures in nbdkit-startup.sh).
. "$(dirname "$0")/lib.sh"
requires qemu-storage-daemon nbdkit nbdinfo nbdcopy nbdsh qemu-img cmp
P=$VUBLK_PLUGIN

# nbdkit is not built with sanitizers, and a sanitizer-built plugin cannot
# load into it (with the runtime preloaded, nbdkit hangs at start-up).  The
# plain pass runs this test; the core code inside the plugin runs under
# ASan/UBSan/TSan in the core tests.
if plugin_is_instrumented; then
  echo "SKIP: plugin is sanitizer-instrumented; nbdkit is not" >&2
  exit 77
fi
run_nbdkit() { nbdkit "$@"; }
uri() { echo "nbd+unix:///?socket=$T/$1.nbd"; }

make_random_image "$T/disk.img" 64M
cp "$T/disk.img" "$T/orig.img"
start_qsd "$T/disk.img" "$T/v.sock" num-queues=2
start_nbdkit main "$P" "$T/v.sock"

# Size and block sizes.
nbdinfo --json "$(uri main)" >"$T/info.json"
/usr/bin/python3 - "$T/info.json" <<'PY' || fail "nbdinfo"
import json, sys
d = json.load(open(sys.argv[1]))
e = d["exports"][0]
assert e["export-size"] == 64 << 20, e["export-size"]
assert e["block_size_minimum"] == 1 and e["block_size_preferred"] == 4096
assert e["can_multi_conn"] is True and e["can_zero"] is True
assert e["can_trim"] is True and e["is_read_only"] is False
PY

# qemu-img convert from the export, compared with the source.
qemu-img convert -f raw -O qcow2 "$(uri main)" "$T/copy.qcow2"
qemu-img compare -f raw -F qcow2 "$T/orig.img" "$T/copy.qcow2" || fail "qemu-img compare"

# Four nbdcopy readers at once.
readers=()
for i in 1 2 3 4; do nbdcopy "$(uri main)" "$T/r$i" & readers+=($!); done
for pid in "${readers[@]}"; do wait "$pid" || fail "nbdcopy reader failed"; done
for i in 1 2 3 4; do cmp "$T/orig.img" "$T/r$i" || fail "reader $i"; done

# nbdcopy into the export, then the backing image byte for byte.
make_random_image "$T/new.img" 64M
nbdcopy --flush "$T/new.img" "$(uri main)"
cmp "$T/new.img" "$T/disk.img" || fail "nbdcopy into the export"

# (libnbd argument order: count before offset.)
# Unaligned writes, zero (with and without trim), trim, flush via nbdsh.
/usr/bin/nbdsh -u "$(uri main)" -c '
import os
buf = os.urandom(1000)
h.pwrite(buf, 4097)
assert h.pread(1000, 4097) == buf
h.zero(1 << 20, 65536 + 100, nbd.CMD_FLAG_NO_HOLE)
assert h.pread(1 << 20, 65536)[100:] == bytes((1 << 20) - 100)
h.zero(4 << 20, 8 << 20)  # may trim
assert h.pread(4 << 20, 8 << 20) == bytes(4 << 20)
h.trim(1 << 20, 16 << 20)
assert h.can_fast_zero() and h.can_flush() and h.can_fua()
h.zero(65536, 8 << 20, nbd.CMD_FLAG_FAST_ZERO)
assert h.pread(65536, 8 << 20) == bytes(65536)
h.flush()
h.pwrite(buf, 12345, nbd.CMD_FLAG_FUA)
assert h.pread(1000, 12345) == buf
' || fail "nbdsh checks"
# The trimmed range must read back zero from the backing file (discard=unmap).
cmp -n $((1 << 20)) -i $((16 << 20)):0 "$T/disk.img" /dev/zero || fail "trim did not zero"

# TCP on 127.0.0.1.
kill "$(cat "$T/main.pid")"; sleep 0.3
start_nbdkit_tcp tcp "nbd://127.0.0.1:PORT" "$P" "$T/v.sock"
[[ $(nbdinfo --size "$TCP_URI") == $((64 << 20)) ]] || fail "TCP export size"
nbdcopy "$TCP_URI" "$T/tcpcopy" && cmp "$T/tcpcopy" "$T/disk.img" || fail "TCP copy"
kill $TCP_PID; wait $TCP_PID 2>/dev/null || true

# nbdkit -r refuses writes.
start_nbdkit ro -r "$P" "$T/v.sock"
if /usr/bin/nbdsh -u "$(uri ro)" -c 'h.pwrite(b"x" * 512, 0)' 2>"$T/err"; then
  fail "write through nbdkit -r succeeded"; fi
grep -qiE "read-only|EPERM|not permitted" "$T/err" || fail "nbdkit -r error: $(cat "$T/err")"
kill "$(cat "$T/ro.pid")"; sleep 0.3

# A read-only export yields a read-only NBD export.
make_random_image "$T/ro.img" 4M
start_qsd "$T/ro.img" "$T/ro.sock" writable=off
start_nbdkit rodev "$P" "$T/ro.sock"
[[ $(nbdinfo --json "$(uri rodev)" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["exports"][0]["is_read_only"])') == True ]] \
  || fail "read-only device not exported read-only"
if /usr/bin/nbdsh -u "$(uri rodev)" -c 'h.pwrite(b"x" * 512, 0)' 2>/dev/null; then
  fail "write to read-only device succeeded"; fi

# fio's nbd engine with verification at queue depth 32.
engines=$(fio --enghelp 2>/dev/null || true)
if [[ $engines =~ (^|[[:space:]])nbd($|[[:space:]]) ]]; then
  start_nbdkit fio "$P" "$T/v.sock"
  fio --name=verify --ioengine=nbd --uri="$(uri fio)" --rw=randwrite \
      --bs=4k --iodepth=32 --size=16M --verify=crc32c --do_verify=1 --verify_state_save=0 \
      --output="$T/fio.out" || { cat "$T/fio.out"; fail "fio verify"; }
  grep -q "err= 0" "$T/fio.out" || fail "fio reported errors"
fi

# Everything above ran with the default spin=0 (each reply waited for by
# sleeping); spin=30 polls for replies at low queue depth (nbdsh and
# nbdcopy) and must serve the same bytes.  An out-of-range spin is
# refused.
if [[ -n ${NBDKIT_PID:-} ]]; then stop_nbdkit; fi
start_nbdkit spin "$P" "$T/v.sock" spin=30
/usr/bin/nbdsh -u "$(uri spin)" -c '
import os
data = os.urandom(3000)
h.pwrite(data, 12345)
assert h.pread(3000, 12345) == data
' || fail "spin=30: unaligned write and read back"
nbdcopy "$(uri spin)" "$T/spin.img" || fail "spin=30: nbdcopy"
stop_nbdkit
cmp "$T/spin.img" "$T/disk.img" || fail "spin=30: copy differs from the image"
if run_nbdkit -f -U "$T/badspin.nbd" "$P" "$T/v.sock" spin=20000 2>"$T/err"; then
  fail "nbdkit started with spin=20000"; fi
grep -q "spin" "$T/err" || fail "spin=20000 error: $(cat "$T/err")"

# A backend with few features: FLUSH (bit 9), DISCARD (13) and
# WRITE_ZEROES (14) masked off in the core's negotiation.  The plugin
# says so: no trim, zero emulated by nbdkit with writes (so no fast
# zero), flush and FUA offered and succeeding (nothing volatile to flush).
VUBLK_TEST_DISABLE_FEATURES=$(( (1 << 9) | (1 << 13) | (1 << 14) )) \
  start_nbdkit poor "$P" "$T/v.sock"
timeout 60 /usr/bin/nbdsh -u "$(uri poor)" -c '
import os
assert not h.can_trim(), "can_trim without DISCARD"
assert h.can_zero() and not h.can_fast_zero(), "zero must be emulated, not fast"
assert h.can_flush() and h.can_fua()
h.pwrite(os.urandom(3 << 20), 1 << 20)
h.zero((1 << 20) + 100, (1 << 20) + 5000, nbd.CMD_FLAG_FUA)
assert h.pread((1 << 20) + 100, (1 << 20) + 5000) == bytes((1 << 20) + 100)
try:
    h.zero(4096, 0, nbd.CMD_FLAG_FAST_ZERO)
    raise AssertionError("fast zero accepted without write-zeroes")
except nbd.Error:
    pass
buf = os.urandom(5000)
h.pwrite(buf, 77777, nbd.CMD_FLAG_FUA)
h.flush()
assert h.pread(5000, 77777) == buf
' || fail "feature-poor backend: $(cat "$T/poor.log")"
stop_nbdkit
cmp -n $(((1 << 20) + 100)) -i $(((1 << 20) + 5000)):0 "$T/disk.img" /dev/zero \
  || fail "feature-poor backend: emulated zero did not reach the image"

# ring=split forces split rings (auto picks them too here: qemu-storage-
# daemon offers no packed rings); the same bytes must come through.
start_nbdkit split "$P" "$T/v.sock" ring=split
timeout 60 /usr/bin/nbdsh -u "$(uri split)" -c '
import os
data = os.urandom(7000)
h.pwrite(data, 54321)
assert h.pread(7000, 54321) == data
' || fail "ring=split: unaligned write and read back: $(cat "$T/split.log")"
timeout 60 nbdcopy "$(uri split)" "$T/split.img" || fail "ring=split: nbdcopy"
stop_nbdkit
cmp "$T/split.img" "$T/disk.img" || fail "ring=split: copy differs from the image"

# memory=hugetlb: the memory shared with the backend is in 2 MiB huge
# pages (reserved here, the old count put back at exit and at the end),
# and data written through NBD lands in the image.  The 64 MiB pool and
# rings take 34 pages; the probe frees its pages before the real open.
if [[ -w /proc/sys/vm/nr_hugepages ]]; then
  old_pages=$(cat /proc/sys/vm/nr_hugepages)
  on_exit "echo $old_pages >/proc/sys/vm/nr_hugepages"
  echo $((old_pages + 40)) >/proc/sys/vm/nr_hugepages || true
fi
if (($(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo) >= 34)); then
  start_nbdkit huge "$P" "$T/v.sock" memory=hugetlb
  grep -q "KernelPageSize: *2048 kB" "/proc/$NBDKIT_PID/smaps" \
    || fail "memory=hugetlb: nbdkit maps no 2 MiB pages"
  grep -q "no huge pages" "$T/huge.log" && fail "memory=hugetlb fell back: $(cat "$T/huge.log")"
  make_random_image "$T/huge.data" 8M
  timeout 60 nbdcopy --flush "$T/huge.data" "$(uri huge)" \
    || fail "memory=hugetlb: nbdcopy in: $(cat "$T/huge.log")"
  T=$T timeout 60 /usr/bin/nbdsh -u "$(uri huge)" -c '
import os
data = os.urandom(5000)
h.pwrite(data, (8 << 20) + 333)
assert h.pread(5000, (8 << 20) + 333) == data
open(os.environ["T"] + "/huge.tail", "wb").write(data)
' || fail "memory=hugetlb: unaligned write and read back"
  stop_nbdkit
  cmp -n $((8 << 20)) "$T/huge.data" "$T/disk.img" || fail "memory=hugetlb: image differs"
  cmp -n 5000 -i 0:$(((8 << 20) + 333)) "$T/huge.tail" "$T/disk.img" \
    || fail "memory=hugetlb: unaligned write not in the image"
  echo "ok: memory=hugetlb serves from 2 MiB pages"
  [[ -n ${old_pages:-} ]] && echo "$old_pages" >/proc/sys/vm/nr_hugepages
else
  echo "(no 34 huge pages could be reserved: memory=hugetlb not checked)"
fi

# Run to completion: a backend with more queues than nbdkit has threads
# in use, so workers drive queues of their own (nbdkit -v says so); four
# nbdcopy connections in and out, and unaligned writes from nbdsh, land.
start_qsd "$T/disk.img" "$T/mq.sock" num-queues=8
start_nbdkit mq -v "$P" "$T/mq.sock" num-queues=8
make_random_image "$T/mq.data" 24M
timeout 60 nbdcopy --connections=4 --flush "$T/mq.data" "$(uri mq)" \
  || fail "thread queues: nbdcopy in"
timeout 60 nbdcopy --connections=4 "$(uri mq)" "$T/mq.back" \
  || fail "thread queues: nbdcopy out"
cmp -n $((24 << 20)) "$T/mq.data" "$T/mq.back" || fail "thread queues: data differs"
grep -q "thread drives queue" "$T/mq.log" \
  || fail "thread queues: no worker drove a queue: $(grep -c debug "$T/mq.log") debug lines"
echo "ok: thread queues: $(grep -c 'thread drives queue' "$T/mq.log") workers drove queues; nbdcopy x4 both ways"
stop_nbdkit
cmp -n $((24 << 20)) "$T/mq.data" "$T/disk.img" || fail "thread queues: image differs"
start_nbdkit mqoff "$P" "$T/mq.sock" num-queues=8 thread-queues=off -v
timeout 60 nbdcopy "$(uri mqoff)" "$T/mq.back2" || fail "thread-queues=off: nbdcopy"
grep -q "thread drives queue" "$T/mqoff.log" && fail "thread-queues=off still drove a queue"
stop_nbdkit

# --dump-plugin, and a socket that is not there fails start-up naming it.
dump=$(run_nbdkit "$P" --dump-plugin)
[[ $dump == *$'\n'libvublk_version=* ]] || fail "--dump-plugin"
if run_nbdkit -f -U "$T/bad.nbd" "$P" socket="$T/nope.sock" 2>"$T/err"; then
  fail "nbdkit started on a missing socket"; fi
grep -q "$T/nope.sock" "$T/err" || fail "missing-socket error: $(cat "$T/err")"
echo "nbdkit plugin checks passed"
