#!/usr/bin/env bash
# Every wait has a deadline, against a busy and against a frozen backend.
#  1. A busy socket: while one client holds qemu-storage-daemon (it serves
#     one at a time), three more clients at once each end within the
#     connect timeout with "busy" in their message; none hangs.
#  2. A SIGSTOPped backend under vublk-fuse with short timeouts: a direct
#     read fails with EIO within request + reconnect timeout (+ slack);
#     after SIGCONT the same mount serves reads again; frozen once more,
#     the file still unmounts and vublk-fuse exits while the backend is
#     stopped.
#     Frozen while idle and connected: a read-only mount unmounts (the
#     rings' stop has its own deadline) and a writable one exits on
#     SIGTERM, reporting the flush that failed.
#  3. -v shows the reconnect and its reason.
. "$(dirname "$0")/lib.sh"
requires qemu-storage-daemon fusermount3 timeout dd
S=$T/v.sock

make_random_image "$T/disk.img" 16M
start_qsd "$T/disk.img" "$S"

# --- 1. busy socket ----------------------------------------------------
"$VUBLK_BIN" bench --time 30 --qd 1 "$S" >"$T/holder.out" 2>&1 &
HOLDER=$!
on_exit "kill $HOLDER"
# Held once another client is told the backend is busy.
for ((i = 0; i < 100; i++)); do
  kill -0 $HOLDER 2>/dev/null || fail "the first client did not start: $(cat "$T/holder.out")"
  [[ $("$VUBLK_BIN" info --connect-timeout 0.2 "$S" 2>&1) == *busy* ]] && break
  sleep 0.1
done
((i < 100)) || fail "the first client never held the backend: $(cat "$T/holder.out")"
for i in 1 2 3; do
  ( start=$SECONDS rc=0
    timeout 20 "$VUBLK_BIN" info --connect-timeout 2 "$S" >"$T/busy$i.out" 2>&1 || rc=$?
    echo "$rc $((SECONDS - start))" >"$T/busy$i.rc" ) &
done
for i in 1 2 3; do
  for ((j = 0; j < 500; j++)); do [[ -s $T/busy$i.rc ]] && break; sleep 0.05; done
  [[ -s $T/busy$i.rc ]] || fail "client $i did not finish within 25 s"
  read -r rc took <"$T/busy$i.rc"
  [[ $rc == 1 ]] || fail "busy client $i: exit $rc (124 = hung), output: $(cat "$T/busy$i.out")"
  ((took <= 4)) || fail "busy client $i took $took s with a 2 s connect timeout"
  grep -q busy "$T/busy$i.out" || fail "busy client $i: no 'busy' in: $(cat "$T/busy$i.out")"
  echo "ok: busy client $i: exit 1 after ${took}s: $(head -1 "$T/busy$i.out")"
done
kill $HOLDER; wait $HOLDER || true

# --- 2. frozen backend ---------------------------------------------------
touch "$T/disk"
"$VUBLK_FUSE_BIN" -d -v --pidfile "$T/fuse.pid" --request-timeout 2 \
  --reconnect-timeout 3 --connect-timeout 1 "$S" "$T/disk" 2>"$T/fuse.err" \
  || fail "vublk-fuse did not mount: $(cat "$T/fuse.err")"
FUSE_PID=$(cat "$T/fuse.pid")
on_exit "kill -CONT $QSD_PID; fusermount3 -u '$T/disk'; kill -9 $FUSE_PID"
dd if="$T/disk" of=/dev/null bs=4k count=1 iflag=direct status=none \
  || fail "read before freezing failed"

kill -STOP "$QSD_PID"
start=$SECONDS
if timeout 30 dd if="$T/disk" of=/dev/null bs=4k count=1 skip=7 iflag=direct \
     status=none 2>"$T/dd.err"; then
  fail "a read from a frozen backend succeeded"
fi
took=$((SECONDS - start))
grep -q "Input/output error" "$T/dd.err" || fail "frozen backend: dd said: $(cat "$T/dd.err")"
# request 2 s + reconnect window 3 s + one 1 s reply wait + 250 ms ticks
((took <= 10)) || fail "EIO took $took s (expected about 6)"
echo "ok: frozen backend: EIO after ${took}s"

kill -CONT "$QSD_PID"
for ((i = 0; i < 100; i++)); do
  dd if="$T/disk" of="$T/back" bs=64k count=1 iflag=direct status=none 2>/dev/null && break
  sleep 0.1
done
((i < 100)) || fail "reads did not recover within 10 s of SIGCONT"
cmp -n 65536 "$T/back" "$T/disk.img" || fail "data read after recovery differs"
echo "ok: recovered $((i / 10)).$((i % 10))s after SIGCONT"

kill -STOP "$QSD_PID"
timeout 30 dd if="$T/disk" of=/dev/null bs=4k count=1 skip=9 iflag=direct \
  status=none 2>/dev/null && fail "second frozen read succeeded"
start=$SECONDS
timeout 10 fusermount3 -u "$T/disk" || fail "fusermount3 -u while frozen failed"
exited_within "$FUSE_PID" 10 \
  || fail "vublk-fuse still running 10 s after unmount with the backend frozen"
echo "ok: unmounted and exited $((SECONDS - start))s after fusermount3 -u, backend frozen"
kill -CONT "$QSD_PID"

# --- 2b. frozen while idle and connected ----------------------------------
# Nothing failed yet, so closing still talks to the backend: a read-only
# mount's unmount stops the rings (1 s deadline per reply), and a
# writable one's SIGTERM flushes first (request + reconnect timeout, then
# reported); both exit with the backend still frozen.
for mode in ro rw; do
  touch "$T/idle"
  ro_opt=(); [[ $mode == ro ]] && ro_opt=(-r)
  mount_fuse "$S" "$T/idle" -v "${ro_opt[@]}" --request-timeout 2 \
    --reconnect-timeout 3 --connect-timeout 1 2>"$T/idle.err"
  IDLE_PID=$FUSE_PID
  dd if="$T/idle" of=/dev/null bs=4k count=1 iflag=direct status=none \
    || fail "$mode: read before freezing failed"
  kill -STOP "$QSD_PID"
  start=$SECONDS
  if [[ $mode == ro ]]; then
    timeout 10 fusermount3 -u "$T/idle" || fail "ro: fusermount3 -u while frozen failed"
    limit=5
  else
    kill -TERM "$IDLE_PID"
    limit=15
  fi
  exited_within "$IDLE_PID" "$limit" \
    || fail "$mode: vublk-fuse still running ${limit} s after it was told to stop, backend frozen"
  if [[ $mode == rw ]]; then
    grep -q "flushing $S before unmount: .*the device failed: no reconnect" "$T/idle.err" \
      || fail "rw: the failed exit flush is not reported: $(cat "$T/idle.err")"
    grep -q " $T/idle fuse.vublk" /proc/mounts && fail "rw: still mounted after SIGTERM"
  fi
  echo "ok: frozen while idle ($mode): exited $((SECONDS - start))s after being told to stop"
  kill -CONT "$QSD_PID"
  # Served again before the next round (the failed device let go of it).
  for ((i = 0; i < 100; i++)); do
    "$VUBLK_BIN" info --connect-timeout 1 "$S" >/dev/null 2>&1 && break
    sleep 0.1
  done
done

# --- 3. what -v said -------------------------------------------------------
grep -q "reconnecting" "$T/fuse.err" || fail "-v printed no reconnect line: $(cat "$T/fuse.err")"
grep -q "no answer within 2 s" "$T/fuse.err" || fail "-v did not say why it reconnected"
echo "ok: -v: $(grep -m1 reconnecting "$T/fuse.err")"
