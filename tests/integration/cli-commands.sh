#!/usr/bin/env bash
# vublk info/copy/bench against qemu-storage-daemon, and bad input.
. "$(dirname "$0")/lib.sh"
requires qemu-storage-daemon cmp
V=$VUBLK_BIN

make_random_image "$T/disk.img" 32M
start_qsd "$T/disk.img" "$T/v.sock" num-queues=4 logical-block-size=4096

# info: text and JSON agree with the export.
"$V" info "$T/v.sock" >"$T/info.txt"
grep -q '^size: *33554432 bytes' "$T/info.txt" || fail "info size"
grep -q '^logical block size: *4096' "$T/info.txt" || fail "info block size"
grep -q '^serial: *vhost_user_blk' "$T/info.txt" || fail "info serial"
grep -q '^memory: .* 64 MiB I/O buffer pool' "$T/info.txt" || fail "info pool"
# Sizes exact, not rounded down to MiB.
"$V" info --pool-size 1.5M "$T/v.sock" | grep -q '^memory: .* 1536 KiB I/O buffer pool' \
  || fail "info --pool-size 1.5M: $("$V" info --pool-size 1.5M "$T/v.sock" | grep memory)"
"$V" info --json "$T/v.sock" >"$T/info.json"
/usr/bin/python3 - "$T/info.json" <<'PY' || fail "info --json"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["size"] == 33554432, d["size"]
assert d["logical_block_size"] == 4096
assert d["queues"] == 4 and d["backend_queues"] == 4
assert "EVENT_IDX" in d["features"] and d["readonly"] is False
assert d["pool_size"] == 64 << 20, d["pool_size"]
# qemu offers indirect descriptors: a request per entry.
assert d["queue_depth"] == d["queue_size"] == 256, (d["queue_depth"], d["queue_size"])
PY
# bench says when --qd or --size asks for more than there is.
"$V" bench --qd 16 --queue-size 8 --size 1G --time 0.2 "$T/v.sock" >/dev/null 2>"$T/err" \
  || fail "bench --qd 16 --queue-size 8: $(cat "$T/err")"
grep -q "warning: --qd 16 is more than a queue holds in flight (8; --queue-size sets it)" "$T/err" \
  || fail "bench: no warning for --qd beyond the queue: $(cat "$T/err")"
grep -q "warning: --size 1073741824 is larger than the device (33554432 bytes)" "$T/err" \
  || fail "bench: no warning for --size beyond the device: $(cat "$T/err")"

# copy: file -> device -> file, with a size that is not block aligned,
# through pipes, with a small pool, and onto itself (refused).
head -c $((20 * 1048576 + 123)) /dev/urandom >"$T/src"
cp "$T/disk.img" "$T/disk.orig"
"$V" copy "$T/src" "vhost-user:$T/v.sock"
"$V" copy "vhost-user:$T/v.sock" "$T/out"
[[ $(stat -c %s "$T/out") == 33554432 ]] || fail "copy out size"
cmp -n $((20 * 1048576 + 123)) "$T/src" "$T/out" || fail "copy round trip"
# The bytes after the copied range must be the image's original ones.
cmp -i $((20 * 1048576 + 123)) "$T/out" "$T/disk.orig" || fail "copy touched bytes past the source"
"$V" copy - "vhost-user:$T/v.sock" <"$T/src"
"$V" copy "vhost-user:$T/v.sock" - | cat >"$T/piped"
cmp -n $((20 * 1048576 + 123)) "$T/piped" "$T/src" || fail "copy through pipes"
# ...whose buffer it grows to one chunk (see the input pipe's, below).
"$V" copy "vhost-user:$T/v.sock" - | /usr/bin/python3 -c '
import fcntl, sys
sys.stdin.buffer.read(1)
want = min(1 << 20, int(open("/proc/sys/fs/pipe-max-size").read()))
size = fcntl.fcntl(0, 1032)     # F_GETPIPE_SZ
while sys.stdin.buffer.read(1 << 20):
    pass
assert size >= want, f"pipe buffer {size}, want {want}"' \
  || fail "copy left its output pipe's buffer small"
# A pool too small for copy's ring of 1 MiB buffers (it then takes its
# buffers elsewhere): both directions finish and match.
timeout 60 "$V" copy --pool-size 1M "$T/src" "vhost-user:$T/v.sock" \
  || fail "copy in with a 1 MiB pool (exit $?; 124: hung)"
timeout 60 "$V" copy --pool-size 1M "vhost-user:$T/v.sock" "$T/out1m" \
  || fail "copy out with a 1 MiB pool (exit $?; 124: hung)"
cmp -n $((20 * 1048576 + 123)) "$T/src" "$T/out1m" || fail "copy with a 1 MiB pool"
# Zeroes: a sparse source (holes, a 2 MiB run of written zeroes, data at
# odd places, ending in a partial hole) goes to the device as
# write-zeroes requests that deallocate (the image loses most of its
# blocks), and the device goes to a sparse file; the data is exact both
# ways and the bytes past the source's end are untouched.  --allocated
# keeps everything allocated, with the same data.
sparse_size=$((24 * 1048576 + 5))
truncate -s $sparse_size "$T/sparse"
head -c 1048576 /dev/urandom | dd of="$T/sparse" bs=1M seek=5 conv=notrunc status=none
head -c 100000 /dev/urandom | dd of="$T/sparse" bs=1 seek=$((9 * 1048576 + 77)) conv=notrunc status=none
dd if=/dev/zero of="$T/sparse" bs=1M seek=12 count=2 conv=notrunc status=none
allocated_kib() { du -k "$1" | cut -f1; }
"$V" copy "$T/disk.orig" "vhost-user:$T/v.sock"
cp "$T/disk.img" "$T/disk.before"
((before = $(allocated_kib "$T/disk.img")))
"$V" copy "$T/sparse" "vhost-user:$T/v.sock" || fail "copy of a sparse file"
((after = $(allocated_kib "$T/disk.img")))
((after < before - 16384)) \
  || fail "copy of a sparse file deallocated nothing: image $before KiB, then $after"
"$V" copy "vhost-user:$T/v.sock" "$T/sparse.out" || fail "copy to a sparse file"
cmp -n $sparse_size "$T/sparse" "$T/sparse.out" || fail "copy of a sparse file: data differs"
cmp -i $sparse_size "$T/sparse.out" "$T/disk.before" \
  || fail "copy of a sparse file touched bytes past its end"
(($(allocated_kib "$T/sparse.out") < 16384)) \
  || fail "copy to a file left no holes: $(allocated_kib "$T/sparse.out") KiB allocated"
"$V" copy --allocated "vhost-user:$T/v.sock" "$T/full.out" || fail "copy --allocated to a file"
cmp "$T/sparse.out" "$T/full.out" || fail "copy --allocated to a file: data differs"
(($(allocated_kib "$T/full.out") >= 32768)) \
  || fail "copy --allocated to a file left holes: $(allocated_kib "$T/full.out") KiB allocated"
"$V" copy "$T/disk.orig" "vhost-user:$T/v.sock"
"$V" copy --allocated "$T/sparse" "vhost-user:$T/v.sock" || fail "copy --allocated of a sparse file"
(($(allocated_kib "$T/disk.img") >= before)) \
  || fail "copy --allocated of a sparse file deallocated: $(allocated_kib "$T/disk.img") KiB, was $before"
"$V" copy "vhost-user:$T/v.sock" "$T/sparse.out"
cmp -n $sparse_size "$T/sparse" "$T/sparse.out" || fail "copy --allocated of a sparse file: data differs"
# To a file (its size is set at the end: the source ends in a hole) and
# to a pipe (a reused buffer must be zeroed for a hole it never read).
"$V" copy "$T/sparse" "$T/sparse.copy" || fail "copy of a sparse file to a file"
[[ $(stat -c %s "$T/sparse.copy") == "$sparse_size" ]] \
  || fail "copy of a sparse file to a file: $(stat -c %s "$T/sparse.copy") bytes, not $sparse_size"
cmp "$T/sparse" "$T/sparse.copy" || fail "copy of a sparse file to a file: data differs"
(($(allocated_kib "$T/sparse.copy") < 4096)) \
  || fail "copy of a sparse file to a file left no holes: $(allocated_kib "$T/sparse.copy") KiB"
"$V" copy "$T/sparse" - | cmp - "$T/sparse" || fail "copy of a sparse file to a pipe: data differs"
rm -f "$T/sparse.out" "$T/full.out" "$T/disk.before" "$T/sparse.copy"
# A file copied onto itself is refused, and left as it was.
cp "$T/src" "$T/self"
if "$V" copy "$T/self" "$T/self" 2>"$T/err"; then fail "copy onto itself succeeded"; fi
grep -q "are the same file" "$T/err" || fail "copy onto itself: $(cat "$T/err")"
if "$V" copy - "$T/self" <"$T/self" 2>"$T/err"; then fail "copy of stdin onto itself succeeded"; fi
cmp "$T/self" "$T/src" || fail "copy onto itself changed the file"
head -c 40M /dev/zero >"$T/big"
if "$V" copy "$T/big" "vhost-user:$T/v.sock" 2>"$T/err"; then fail "oversized copy succeeded"; fi
grep -q "only 33554432" "$T/err" || fail "oversized copy message: $(cat "$T/err")"

# copy stopped by SIGTERM while its source (a pipe) has stalled: what
# it read is on the device, flushed, and it says how much; exit 143.
head -c $((3 * 1048576)) /dev/urandom >"$T/part"
# The signal goes once cat is done: copy has then read all but the
# pipe's last buffer, so it is running (its handler set) however slow
# the machine.
mkfifo "$T/stalled"
( cat "$T/part"; touch "$T/fed"; exec sleep 30 ) >"$T/stalled" &
feeder=$!
"$V" copy - "vhost-user:$T/v.sock" <"$T/stalled" 2>"$T/stop.err" &
copier=$!
for ((i = 0; i < 400; i++)); do [[ -e $T/fed ]] && break; sleep 0.05; done
[[ -e $T/fed ]] || fail "copy did not take its 3 MiB of input within 20 s"
# copy asked for a pipe buffer of one chunk (1 MiB, or the most the
# system allows): 64 KiB made it 4x slower through pipes.
/usr/bin/python3 - "$T/stalled" <<'PY' || fail "copy left its input pipe's buffer small"
import fcntl, os, sys
want = min(1 << 20, int(open("/proc/sys/fs/pipe-max-size").read()))
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_NONBLOCK)
size = fcntl.fcntl(fd, 1032)    # F_GETPIPE_SZ
assert size >= want, f"pipe buffer {size}, want {want}"
PY
# Each chunk read is written at once, not held until the ring of 8 is
# full: while the pipe stalls, the image already has the 3 MiB.
for ((i = 0; i < 200; i++)); do
  cmp -s -n $((3 * 1048576)) "$T/part" "$T/disk.img" && break
  sleep 0.05
done
cmp -s -n $((3 * 1048576)) "$T/part" "$T/disk.img" \
  || fail "copy from a stalled pipe held back the chunks it had read"
sleep 0.3
kill -TERM $copier
rc=0
timeout 20 tail --pid=$copier -f /dev/null || fail "copy did not stop within 20 s of SIGTERM"
wait $copier || rc=$?
kill $feeder 2>/dev/null || true
[[ $rc == 143 ]] || fail "copy stopped by SIGTERM: exit $rc, not 143: $(cat "$T/stop.err")"
grep -q "^vublk: copy: stopped by SIGTERM: vhost-user:$T/v.sock holds the first 3145728 bytes of -$" \
  "$T/stop.err" || fail "copy stopped by SIGTERM did not say how far: $(cat "$T/stop.err")"
"$V" copy "vhost-user:$T/v.sock" "$T/stop.out"
cmp -n $((3 * 1048576)) "$T/part" "$T/stop.out" || fail "copy stopped by SIGTERM lost data"

# bench: every mode runs and prints parseable numbers.
for rw in randread randwrite read write randrw; do
  "$V" bench --rw $rw --time 0.5 --qd 8 --bs 4k "$T/v.sock" >"$T/bench" 2>/dev/null \
    || fail "bench $rw"
  iops=$(sed -n 's/.*: \([0-9]*\) IOPS.*/\1/p' "$T/bench")
  [[ $iops -gt 0 ]] || fail "bench $rw printed no IOPS: $(cat "$T/bench")"
  grep -q '^latency: p50 [0-9.]* us, p99 [0-9.]* us, p99.9 [0-9.]* us' "$T/bench" \
    || fail "bench latency line"
  grep -q '^client CPU: [0-9.]* us per request' "$T/bench" || fail "bench cpu line"
done

# A device whose size is not a whole number of its logical blocks ends
# before the partial block (which no request can reach): info reports it
# so and a copy of the whole device succeeds.
head -c $((1048576 + 512)) /dev/urandom >"$T/odd.img"
QSD_MAIN=$QSD_PID
start_qsd "$T/odd.img" "$T/odd.sock" logical-block-size=4096
"$V" info --json "$T/odd.sock" | /usr/bin/python3 -c '
import json, sys; assert json.load(sys.stdin)["size"] == 1048576' \
  || fail "a 1 MiB + 512 B device with 4 KiB blocks is not 1 MiB"
"$V" copy "vhost-user:$T/odd.sock" "$T/odd.out" || fail "copy of the odd-sized device"
[[ $(stat -c %s "$T/odd.out") == 1048576 ]] \
  && cmp -n 1048576 "$T/odd.out" "$T/odd.img" || fail "odd-sized device copy differs"
kill "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true
# A backend gone for good while bench runs: once the reconnect window is
# over every request fails, and bench ends then, not at --time, saying
# why, with its figures over the time it ran and exit status 1.
start_qsd "$T/odd.img" "$T/gone.sock"
"$V" bench --time 60 --qd 4 --bs 4k --reconnect-timeout 1 "$T/gone.sock" \
  >"$T/gone.out" 2>"$T/gone.err" &
bencher=$!
for ((i = 0; i < 100; i++)); do
  [[ $("$V" info --connect-timeout 0.2 "$T/gone.sock" 2>&1) == *busy* ]] && break
  sleep 0.1
done
kill -9 "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true
timeout 15 tail --pid=$bencher -f /dev/null \
  || { kill -9 $bencher; fail "bench ran on after every request had failed: $(cat "$T/gone.err")"; }
rc=0; wait $bencher || rc=$?
[[ $rc == 1 ]] || fail "bench on a vanished backend: exit $rc, not 1"
grep -q "every request stream stopped at an error after" "$T/gone.err" \
  || fail "bench on a vanished backend did not say why it ended: $(cat "$T/gone.err")"
grep -q "^errors: [1-9]" "$T/gone.out" || fail "bench counted no errors: $(cat "$T/gone.out")"
# A pipe that turns out larger than the device: what fits is copied and
# flushed, and copy says the source was larger (status 1).
head -c 1048576 /dev/zero >"$T/small.img"
start_qsd "$T/small.img" "$T/small.sock"
head -c $((1048576 + 4097)) /dev/urandom >"$T/big.src"
rc=0
cat "$T/big.src" | "$V" copy - "vhost-user:$T/small.sock" 2>"$T/err" || rc=$?
[[ $rc == 1 ]] && grep -q "the source is larger than the device (1048576 bytes): that much was copied and flushed" "$T/err" \
  || fail "copy of a pipe larger than the device: exit $rc: $(cat "$T/err")"
"$V" copy "vhost-user:$T/small.sock" "$T/small.back" || fail "reading the small device back"
cmp "$T/small.back" <(head -c 1048576 "$T/big.src") || fail "the part that fits was not copied"
kill "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true
QSD_PID=$QSD_MAIN

# Bad input: one line naming the problem, non-zero exit.
expect_error() {
  local code=$1 pattern=$2; shift 2
  local rc=0
  timeout 20 "$V" "$@" >/dev/null 2>"$T/err" || rc=$?
  [[ $rc == "$code" ]] || fail "vublk $*: exit $rc, expected $code"
  grep -q -- "$pattern" "$T/err" || fail "vublk $*: message '$(cat "$T/err")' lacks '$pattern'"
}
expect_error 1 "No such file" info "$T/missing.sock"
expect_error 2 "no SOCKET given" info ""
expect_error 2 "no SOCKET given" bench ""
expect_error 2 "'vhost-user:' names no socket" copy vhost-user: "$T/x.out"
expect_error 2 "copy: DST is empty" copy "$T/src" ""
# A copy appending to its own source through standard output would never
# end (it grew a 20 MiB file to 1.5 GB in 5 s): refused, file untouched.
cp "$T/src" "$T/self2"
size=$(stat -c %s "$T/self2")
for form in file stdin; do
  rc=0
  if [[ $form == file ]]; then
    timeout 20 "$V" copy "$T/self2" - >>"$T/self2" 2>"$T/err" || rc=$?
  else
    timeout 20 "$V" copy - - <"$T/self2" >>"$T/self2" 2>"$T/err" || rc=$?
  fi
  [[ $rc == 1 ]] && grep -q "are the same file" "$T/err" \
    || fail "copy ($form) >> its source: exit $rc: $(cat "$T/err")"
  [[ $(stat -c %s "$T/self2") == "$size" ]] || fail "copy ($form) >> its source grew it"
done
# Closed standard streams: the library's fds must not take their numbers
# (stdin closed made copy wait on an eventfd for ever).
timeout 20 "$V" copy - "vhost-user:$T/v.sock" <&- 2>"$T/err" \
  || fail "copy with stdin closed: exit $? (124: hung): $(cat "$T/err")"
# Output that cannot be written is an error, not exit 0.
rc=0; "$V" info --json "$T/v.sock" >/dev/full 2>"$T/err" || rc=$?
[[ $rc == 1 ]] && grep -q "writing standard output: No space left on device" "$T/err" \
  || fail "info >/dev/full: exit $rc: $(cat "$T/err")"
# A socket given as a plain path, in either direction: the message shows
# the spelling that works (before: "No such device or address").
expect_error 2 "$T/v.sock is a socket, not a file: write vhost-user:$T/v.sock" copy "$T/src" "$T/v.sock"
expect_error 2 "$T/v.sock is a socket, not a file: write vhost-user:$T/v.sock" copy "$T/v.sock" "$T/x.out"
# A device onto itself is refused before connecting (before, after the
# connect timeout, as "busy"), a symbolic link to its socket included.
ln -s "$T/v.sock" "$T/v-link.sock"
expect_error 1 "are the same device" copy "vhost-user:$T/v.sock" "vhost-user:$T/v-link.sock"
expect_error 1 "not a UNIX socket" info "$T/disk.img"
# A socket nobody listens on, and one that speaks another protocol: the
# message says what is wrong, not only what failed.
/usr/bin/python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$T/stale.sock"
expect_error 1 "nothing listens on it: a backend that exited leaves its socket file behind" info "$T/stale.sock"
if command -v nbdkit >/dev/null; then
  nbdkit -f -U "$T/nbd.sock" memory 1M 2>/dev/null &
  NBD_PID=$!
  on_exit "kill $NBD_PID"
  for ((i = 0; i < 100; i++)); do [[ -S $T/nbd.sock ]] && break; sleep 0.05; done
  expect_error 1 "the reply is not vhost-user .*another protocol (an NBD server?)" info "$T/nbd.sock"
  kill "$NBD_PID"; wait "$NBD_PID" 2>/dev/null || true
fi
# copy's device syntax where a SOCKET is asked for.
"$V" info "vhost-user:$T/v.sock" | grep -q "^socket: *$T/v.sock$" || fail "info vhost-user:SOCKET"
expect_error 2 "'abc' is not a number" bench --qd abc "$T/v.sock"
expect_error 2 "outside" bench --bs 0 "$T/v.sock"
expect_error 2 "not a multiple of the device" bench --bs 512 "$T/v.sock"
expect_error 2 "not a positive number" bench --qd -3 "$T/v.sock"
expect_error 2 "unknown command" frobnicate
expect_error 2 "no SOCKET" info
expect_error 2 "needs a value" copy "$T/src" "$T/out" --queue-size
expect_error 2 "needs a value" info "$T/v.sock" --pool-size
expect_error 2 "not a size" info --pool-size " -4096" "$T/v.sock"
expect_error 2 "not a number" bench --qd " 4" "$T/v.sock"
expect_error 2 "'1k' has trailing garbage (a plain count" bench --qd 1k "$T/v.sock"
expect_error 2 "'1.5' is not a whole number" bench --qd 1.5 "$T/v.sock"
expect_error 2 "'0' is not a number of seconds above 0" bench --time 0 "$T/v.sock"
expect_error 2 "info: unknown option '--bogus' (try vublk info --help)" info --bogus "$T/v.sock"
expect_error 2 "copy: option '--queue-size' needs a value" copy "$T/src" "$T/out" --queue-size
expect_error 2 "info: more than one SOCKET given" info "$T/v.sock" "$T/v.sock"
expect_error 2 "info: option '--json' takes no value" info --json=yes "$T/v.sock"
expect_error 2 "info: unknown option '-x'" info --pool-size=8M -xv "$T/v.sock"
# Whole option names only: getopt would take --queue for --queues.
expect_error 2 "info: unknown option '--queue' (options are written whole" info --queue 2 "$T/v.sock"
expect_error 2 "bench: unknown option '--re' (options are written whole" bench --re 5 "$T/v.sock"
POSIXLY_CORRECT=1 "$V" info "$T/v.sock" --json | grep -q '"size"' \
  || fail "POSIXLY_CORRECT: an option after the operand"
# The command line as getopt reads it: --name=value, options after the
# operand, "--" before it, -h after a command.
"$V" info --queues=1 "$T/v.sock" | grep -q "^queues: *1 in use" \
  || fail "info --queues=1: $("$V" info --queues=1 "$T/v.sock" 2>&1)"
"$V" info "$T/v.sock" --json | grep -q '"size"' || fail "info SOCKET --json"
"$V" info --json -- "$T/v.sock" | grep -q '"size"' || fail "info -- SOCKET"
for c in info copy bench; do
  "$V" $c -h | grep -q "^Usage: vublk $c" || fail "vublk $c -h printed no usage"
done
expect_error 2 "'0x1' is not a number of seconds" bench --time 0x1 "$T/v.sock"
expect_error 2 "'1e0' is not a whole number" info --queues 1e0 "$T/v.sock"
expect_error 2 "--size 512 is smaller than --bs" bench --size 512 --bs 4k "$T/v.sock"
# --time beyond what a useconds_t holds (71 minutes) still runs that long;
# SIGTERM (or SIGINT, SIGHUP) ends it early with the figures so far,
# after the requests in flight are answered, and exit status 128+signal.
# The signal goes once the backend answers other clients "busy" and a
# second more has passed: bench is then running, however slow the
# machine (a signal during the connect ends it at once, as it should).
# wait_bench_holds SOCKET ERR: waits up to 10 s (or fails, showing the
# bench's stderr ERR) until the backend at SOCKET answers another client
# "busy": bench is connected.
wait_bench_holds() {
  local i
  for ((i = 0; i < 100; i++)); do
    [[ $("$V" info --connect-timeout 0.2 "$1" 2>&1) == *busy* ]] && return
    sleep 0.1
  done
  fail "bench never held the backend: $(cat "$2")"
}
"$V" bench --time 4295 --qd 4 "$T/v.sock" >"$T/stopped.out" 2>"$T/stopped.err" &
bencher=$!
wait_bench_holds "$T/v.sock" "$T/stopped.err"
sleep 1
kill -0 $bencher 2>/dev/null || fail "bench --time 4295 ended early: $(cat "$T/stopped.err")"
kill -TERM $bencher
timeout 20 tail --pid=$bencher -f /dev/null || fail "bench did not stop within 20 s of SIGTERM"
rc=0; wait $bencher || rc=$?
[[ $rc == 143 ]] || fail "bench --time 4295 stopped by SIGTERM: exit $rc, not 143"
grep -Eq "^randread bs=4096 qd=4 queues=[0-9]+ driven: [1-9][0-9]* IOPS" "$T/stopped.out" \
  || fail "bench stopped by SIGTERM printed no figures: $(cat "$T/stopped.out")"
grep -Eq "^vublk: bench: stopped by SIGTERM after [0-9]\.[0-9] s" "$T/stopped.err" \
  || fail "bench stopped by SIGTERM did not say so: $(cat "$T/stopped.err")"
grep -q "^errors:" "$T/stopped.out" && fail "bench stopped by SIGTERM counted errors"
# With the backend frozen the drain waits for requests that do not come
# back: bench says so within seconds, and a second signal ends it at once.
# On a backend of its own: qemu-storage-daemon 7.2 aborts (assertion
# '!server->wait_idle' in vhost_user_server_ref) once it runs again after
# a client vanished with requests in flight, which is what a second
# signal does.
# stop_on_frozen_backend COMMAND PID SECOND: freezes the backend
# ($QSD_PID), sends SIGTERM to vublk COMMAND (PID, stderr in
# $T/frozen.err), which must say within 10 s that it waits for the
# requests in flight; a second stop signal (SECOND: TERM or HUP) must
# then end it within 5 s, killed by that signal.  The backend is killed
# after.  The SIGTERM comes 0.3 s after the freeze: requests the backend
# had answered but the client not yet taken (bench at depth 4 often has
# all of them so) are taken and replaced by requests that stay in flight.
stop_on_frozen_backend() {
  local command=$1 pid=$2 second=$3 i rc=0
  kill -STOP "$QSD_PID"
  sleep 0.3
  kill -TERM "$pid"
  for ((i = 0; i < 100; i++)); do
    grep -q "^vublk: $command: waiting for the requests in flight (interrupt again to quit at once)$" \
      "$T/frozen.err" && break
    sleep 0.1
  done
  ((i < 100)) || { kill -CONT "$QSD_PID"; fail "$command stopped on a frozen backend said nothing: $(cat "$T/frozen.err")"; }
  kill -"$second" "$pid"
  timeout 5 tail --pid="$pid" -f /dev/null \
    || { kill -CONT "$QSD_PID"; fail "$command ignored SIG$second after SIGTERM while waiting"; }
  wait "$pid" || rc=$?
  [[ $rc == $((128 + $(kill -l "$second"))) ]] \
    || fail "$command ended by SIG$second after SIGTERM: exit $rc"
  kill -9 "$QSD_PID" 2>/dev/null; wait "$QSD_PID" 2>/dev/null || true
}
main_qsd=$QSD_PID
make_random_image "$T/frozen.img" 16M
start_qsd "$T/frozen.img" "$T/frozen.sock"
"$V" bench --time 4295 --qd 4 "$T/frozen.sock" >/dev/null 2>"$T/frozen.err" &
bencher=$!
wait_bench_holds "$T/frozen.sock" "$T/frozen.err"
sleep 0.5
stop_on_frozen_backend bench $bencher TERM
# copy, the same: stopped while its device destination is frozen (its
# writes are on the image, its closing flush cannot be answered), it says
# it waits, and a second signal ends it.
make_random_image "$T/frozen.img" 16M
start_qsd "$T/frozen.img" "$T/frozen.sock"
mkfifo "$T/stalled2"
( cat "$T/part"; exec sleep 30 ) >"$T/stalled2" &
feeder=$!
on_exit "kill $feeder"
"$V" copy - "vhost-user:$T/frozen.sock" <"$T/stalled2" 2>"$T/frozen.err" &
copier=$!
for ((i = 0; i < 200; i++)); do
  cmp -s -n $((3 * 1048576)) "$T/part" "$T/frozen.img" && break
  sleep 0.05
done
((i < 200)) || fail "copy did not write its 3 MiB within 10 s: $(cat "$T/frozen.err")"
stop_on_frozen_backend copy $copier HUP
kill $feeder 2>/dev/null || true
QSD_PID=$main_qsd
# info --json stays valid JSON whatever the socket's name.
odd=$T/'q"x\y.sock'
ln -s "$T/v.sock" "$odd"
"$V" info --json "$odd" | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["socket"] == sys.argv[1], d["socket"]' "$odd" || fail "info --json with an odd socket name"
# A socket that accepts and never answers must fail within seconds.
/usr/bin/python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)
c, _ = s.accept(); time.sleep(30)' "$T/silent.sock" &
on_exit "kill $!"
wait_for_socket "$T/silent.sock"
start=$SECONDS
expect_error 1 "no reply within" info "$T/silent.sock"
(( SECONDS - start <= 10 )) || fail "silent socket took $((SECONDS - start)) s"
echo "cli checks passed"
