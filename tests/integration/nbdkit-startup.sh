#!/usr/bin/env bash
# nbdkit vhostuser start-up: the plugin probes the device before nbdkit
# binds its socket, forks or runs a --run command, so a bad socket fails
# at once with exit 1, a message naming it, no --run command started and
# no NBD socket file left behind (issue 15 item 3).  Then a good start on
# the same paths, a --run against qemu-storage-daemon (which serves one
# client at a time, so the probe must have hung up), and a listener that
# never answers, with the default connect-timeout and with
# connect-timeout=1 (issue 15), and parameters refused with a message
# naming them.  Capabilities against a feature-poor backend are checked in
# nbdkit-plugin.sh.
. "$(dirname "$0")/lib.sh"
requires qemu-storage-daemon nbdkit nbdinfo timeout
P=$VUBLK_PLUGIN

if plugin_is_instrumented; then
  echo "SKIP: plugin is sanitizer-instrumented; nbdkit is not" >&2
  exit 77
fi

# expect_start_failure NAME LOG ARGS...: nbdkit ARGS must exit 1 within
# 30 s, its stderr (in LOG) naming the vhost-user socket $T/missing.
expect_start_failure() {
  local name=$1 log=$2 rc=0; shift 2
  timeout 30 nbdkit "$@" 2>"$log" || rc=$?
  [[ $rc == 1 ]] || fail "$name: exit status $rc, expected 1: $(cat "$log")"
  grep -q "$T/missing" "$log" || fail "$name: message does not name the socket: $(cat "$log")"
}

# (a) --run with a missing socket: the command never runs.
expect_start_failure "--run" "$T/run.err" \
  -U "$T/run.nbd" "$P" socket="$T/missing" --run "touch $T/ran"
[[ ! -e $T/ran ]] || fail "--run command ran although the device cannot be opened"
[[ ! -e $T/run.nbd ]] || fail "--run: NBD socket $T/run.nbd left behind"

# (b) In the foreground (-f) and as a daemon: exit 1, no socket file left.
expect_start_failure "-f" "$T/fg.err" -f -U "$T/s.nbd" "$P" socket="$T/missing"
[[ ! -e $T/s.nbd ]] || fail "-f: NBD socket $T/s.nbd left behind"
expect_start_failure "daemon" "$T/bg.err" -U "$T/bg.nbd" -P "$T/bg.pid" \
  "$P" socket="$T/missing"
[[ ! -e $T/bg.nbd ]] || fail "daemon: NBD socket $T/bg.nbd left behind"
[[ ! -e $T/bg.pid ]] || fail "daemon: pid file written although start-up failed"

# ... and the next start on the same -U path works.
make_random_image "$T/disk.img" 8M
start_qsd "$T/disk.img" "$T/v.sock"
start_nbdkit s "$P" socket="$T/v.sock"
[[ $(timeout 30 nbdinfo --size "nbd+unix:///?socket=$T/s.nbd") == $((8 << 20)) ]] \
  || fail "good start on $T/s.nbd: wrong size or no answer: $(cat "$T/s.log")"
stop_nbdkit

# A good --run: the probe has hung up before the real open, so the
# one-client backend accepts the plugin's connection and the command runs.
timeout 60 nbdkit -U - "$P" socket="$T/v.sock" \
  --run "nbdinfo --size \"\$uri\" >$T/run.size" 2>"$T/goodrun.err" \
  || fail "--run against a good socket failed: $(cat "$T/goodrun.err")"
[[ $(cat "$T/run.size") == $((8 << 20)) ]] || fail "--run: nbdinfo size $(cat "$T/run.size")"

# ring=packed against qemu-storage-daemon, which offers no packed rings:
# the probe refuses it, exit 1, the socket and the reason named.
rc=0
timeout 30 nbdkit -f -U "$T/packed.nbd" "$P" socket="$T/v.sock" ring=packed \
  2>"$T/packed.err" || rc=$?
[[ $rc == 1 ]] || fail "ring=packed without packed rings: exit status $rc: $(cat "$T/packed.err")"
grep -q "$T/v.sock.*packed" "$T/packed.err" || fail "ring=packed: message: $(cat "$T/packed.err")"
[[ ! -e $T/packed.nbd ]] || fail "ring=packed: NBD socket left behind"

# (c) A socket that listens but never speaks vhost-user: start-up fails
# within the library's handshake timeout (5 s per reply) with a message.
/usr/bin/python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(8)
conns = []
while True:
    c, _ = s.accept(); conns.append(c)   # hold it open, never answer
' "$T/silent.sock" &
silent=$!
on_exit "kill $silent"
wait_for_socket "$T/silent.sock"
start=$SECONDS rc=0
timeout 30 nbdkit -f -U "$T/silent.nbd" "$P" socket="$T/silent.sock" \
  --run "touch $T/silent.ran" 2>"$T/silent.err" || rc=$?
elapsed=$((SECONDS - start))
[[ $rc == 1 ]] || fail "silent listener: exit status $rc, expected 1: $(cat "$T/silent.err")"
((elapsed <= 15)) || fail "silent listener: start-up took ${elapsed}s"
grep -q "$T/silent.sock" "$T/silent.err" || fail "silent listener: message: $(cat "$T/silent.err")"
[[ ! -e $T/silent.ran && ! -e $T/silent.nbd ]] || fail "silent listener: --run ran or socket left"

# connect-timeout=1: the same listener fails start-up within 1-3 s.
start=$(date +%s%N) rc=0
timeout 30 nbdkit -f -U "$T/silent1.nbd" "$P" socket="$T/silent.sock" \
  connect-timeout=1 2>"$T/silent1.err" || rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
[[ $rc == 1 ]] || fail "connect-timeout=1: exit status $rc, expected 1: $(cat "$T/silent1.err")"
((ms >= 900 && ms <= 3500)) || fail "connect-timeout=1: start-up failed after $ms ms"
grep -q "$T/silent.sock" "$T/silent1.err" || fail "connect-timeout=1: message: $(cat "$T/silent1.err")"
[[ ! -e $T/silent1.nbd ]] || fail "connect-timeout=1: NBD socket left behind"

# Bad parameter values: exit 1 before any connection, the key named.
for kv in memory=bogus memory= ring=bogus ring=SPLIT connect-timeout=0 \
          connect-timeout=3601 connect-timeout=1s connect-timeout=; do
  rc=0
  timeout 30 nbdkit -f -U "$T/bad.nbd" "$P" socket="$T/v.sock" "$kv" \
    2>"$T/bad.err" || rc=$?
  [[ $rc == 1 ]] || fail "$kv: exit status $rc, expected 1: $(cat "$T/bad.err")"
  grep -q "${kv%%=*}: '${kv#*=}'" "$T/bad.err" || fail "$kv: message does not name it: $(cat "$T/bad.err")"
  [[ ! -e $T/bad.nbd ]] || fail "$kv: NBD socket left behind"
done
# Two sockets: refused, both named.
rc=0
timeout 30 nbdkit -f -U "$T/bad.nbd" "$P" socket="$T/v.sock" socket="$T/other.sock" \
  2>"$T/bad.err" || rc=$?
[[ $rc == 1 ]] || fail "socket= twice: exit status $rc, expected 1: $(cat "$T/bad.err")"
grep -q "socket= given twice" "$T/bad.err" || fail "socket= twice: $(cat "$T/bad.err")"
[[ ! -e $T/bad.nbd ]] || fail "socket= twice: NBD socket left behind"
# Any other key twice, under either of its names: refused as well.
rc=0
timeout 30 nbdkit -f -U "$T/bad.nbd" "$P" socket="$T/v.sock" num-queues=2 queues=1 \
  2>"$T/bad.err" || rc=$?
[[ $rc == 1 ]] && grep -q "queues= given twice (first as num-queues=)" "$T/bad.err" \
  || fail "num-queues= then queues=: exit $rc: $(cat "$T/bad.err")"
echo "nbdkit start-up checks passed (silent listener failed in ${elapsed}s, with connect-timeout=1 in $ms ms: $(head -c 300 "$T/silent1.err"))"
