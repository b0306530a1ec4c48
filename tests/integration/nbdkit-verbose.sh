#!/usr/bin/env bash
# What the library notices on its own reaches nbdkit's log (issue 12 item
# 2): with `nbdkit -v` a kill -9 and restart of qemu-storage-daemon shows
# up as the plugin's "warning: ... reconnecting" and "info: reconnected"
# debug lines, and I/O after it lands in the image; without -v those lines
# stay hidden, but a backend that never comes back is reported as an error
# (requests failed) on stderr.  With memory=hugetlb and no huge page free,
# the fallback warning is shown at start-up even without -v.
. "$(dirname "$0")/lib.sh"
requires qemu-storage-daemon nbdkit nbdsh cmp timeout
P=$VUBLK_PLUGIN
S=$T/v.sock

if plugin_is_instrumented; then
  echo "SKIP: plugin is sanitizer-instrumented; nbdkit is not" >&2
  exit 77
fi
uri() { echo "nbd+unix:///?socket=$T/$1.nbd"; }

make_random_image "$T/disk.img" 16M
start_qsd "$T/disk.img" "$S"

# (a) nbdkit -v: the reconnect and its reason are in nbdkit's stderr.
start_nbdkit verbose -v "$P" socket="$S" reconnect-timeout=30
kill -9 "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true
wait_for_log "$T/verbose.log" "debug: warning: $S: backend closed the connection; reconnecting" 10
start_qsd "$T/disk.img" "$S"
head -c 65536 /dev/urandom >"$T/data"
timeout 60 /usr/bin/nbdsh -u "$(uri verbose)" -c "
data = open('$T/data', 'rb').read()
h.pwrite(data, 1 << 20)
h.flush()
assert h.pread(len(data), 1 << 20) == data
" || fail "I/O after the backend restart: $(tail -20 "$T/verbose.log")"
wait_for_log "$T/verbose.log" "debug: info: $S: reconnected \(reconnect 1\)" 10
cmp -n 65536 -i 0:$((1 << 20)) "$T/data" "$T/disk.img" \
  || fail "data written after the reconnect is not in the image"
grep -q "error:" "$T/verbose.log" && fail "an error was logged: $(grep error: "$T/verbose.log")"
echo "ok: nbdkit -v shows: $(grep -E 'debug: (warning|info): ' "$T/verbose.log" | head -2 | tr '\n' '|')"
stop_nbdkit

# (b) Without -v: reconnect lines hidden; a backend that stays away past
# reconnect-timeout is an error on stderr (requests failed with EIO).
start_nbdkit quiet "$P" socket="$S" reconnect-timeout=1
kill -9 "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true
# One read at a time (nbdkit before 1.33.10 can abort when a client hangs
# up with replies queued; see frontend-restarts.sh).
if timeout 30 /usr/bin/nbdsh -u "$(uri quiet)" -c 'h.pread(4096, 0)' 2>"$T/err"; then
  fail "a read succeeded with the backend gone"
fi
grep -qi "input/output error" "$T/err" || fail "read with the backend gone: $(cat "$T/err")"
wait_for_log "$T/quiet.log" "nbdkit: error: $S: backend did not come back within 1 s" 10
grep -q "debug:\|reconnecting" "$T/quiet.log" \
  && fail "debug lines without -v: $(cat "$T/quiet.log")"
# Every later request's error names the reason too, not only the log's
# one line (before: "read at offset 0: Input/output error").
if timeout 30 /usr/bin/nbdsh -u "$(uri quiet)" -c 'h.pread(4096, 8192)' 2>/dev/null; then
  fail "a read succeeded on the failed device"
fi
wait_for_log "$T/quiet.log" "nbdkit: vhostuser.[0-9]+: error: $S: read at offset 8192: the device failed: no reconnect to the backend succeeded within 1 s \\(last attempt: connect: Connection refused" 10
echo "ok: without -v: $(grep -m1 'did not come back' "$T/quiet.log")"
echo "ok: a request on the failed device: $(grep -m1 'the device failed' "$T/quiet.log")"
# The reason follows the retries (every second): a backend back with
# another block size is named, not the refused connect of before.
start_qsd "$T/disk.img" "$S" logical-block-size=4096
for ((i = 0; i < 40; i++)); do
  timeout 30 /usr/bin/nbdsh -u "$(uri quiet)" -c 'h.pread(4096, 16384)' 2>/dev/null \
    && fail "a read succeeded on a backend with another block size"
  grep -qE "read at offset 16384: the device failed: .*last attempt: backend now reports a block size of 4096 bytes, 512 before" "$T/quiet.log" && break
  sleep 0.25
done
grep -qE "read at offset 16384: the device failed: .*last attempt: backend now reports a block size of 4096 bytes" "$T/quiet.log" \
  || fail "the failed device's reason did not follow the retries: $(grep 'offset 16384' "$T/quiet.log" | tail -1)"
echo "ok: the reason follows the retries: $(grep -m1 'block size of 4096' "$T/quiet.log")"
stop_nbdkit
kill "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true
start_qsd "$T/disk.img" "$S"

# (c) memory=hugetlb with no huge page free: ordinary memory, and the
# warning is on stderr at start-up without -v.  (Huge pages that are free
# are used; nbdkit-plugin.sh checks that.)
if (($(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo) == 0)); then
  start_nbdkit nohuge "$P" socket="$S" memory=hugetlb
  grep -q "warning: $S: no huge pages.*nr_hugepages" "$T/nohuge.log" \
    || fail "no fallback warning without -v: $(cat "$T/nohuge.log")"
  [[ $(timeout 30 /usr/bin/nbdsh -u "$(uri nohuge)" -c 'print(h.get_size())') == $((16 << 20)) ]] \
    || fail "memory=hugetlb fallback does not serve"
  echo "ok: fallback at start-up: $(head -1 "$T/nohuge.log")"
  stop_nbdkit
else
  echo "(huge pages are free here: fallback warning not checked)"
fi
echo PASS
