#!/usr/bin/env bash
# libvublk survives what storage engineers do to backends:
#  1. kill -9 and restart qemu-storage-daemon four times under a
#     multi-threaded write/verify load: every write succeeds and the
#     backing image equals the shadow afterwards;
#  2. a backend that never comes back: reads fail with EIO within the
#     reconnect timeout, new reads fail at once, and the device recovers
#     when the backend returns;
#  3. a backend that stops answering (SIGSTOP): the request timeout turns
#     it into a reconnect, then EIO, and SIGCONT brings it back;
# (Resize: qemu-storage-daemon 7.2 truncates the image on block_resize but
# never sends the config-change message, strace shows, and its GET_CONFIG
# keeps the old capacity; the config-change path is tested against the
# test backend instead.)
. "$(dirname "$0")/lib.sh"
requires qemu-storage-daemon cmp
STRESS=$VUBLK_TESTS/vublk_stress
PROBE=$VUBLK_TESTS/vublk_probe

# 1. Restarts under load.
make_random_image "$T/disk.img" 16M
cp "$T/disk.img" "$T/shadow"
start_qsd "$T/disk.img" "$T/vhost.sock" num-queues=2
"$STRESS" "$T/vhost.sock" "$T/shadow" --threads 4 --seconds 8 --queues 2 \
  --reconnect-timeout 20 >"$T/stress.out" 2>&1 &
stress=$!
for i in 1 2 3 4; do
  sleep 1.2
  kill -9 "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true
  sleep 0.2
  start_qsd "$T/disk.img" "$T/vhost.sock" num-queues=2
done
wait $stress || { cat "$T/stress.out"; fail "I/O failed across restarts"; }
cat "$T/stress.out"
reconnects=$(sed -n 's/^reconnects: //p' "$T/stress.out")
[[ $reconnects -ge 4 ]] || fail "expected >= 4 reconnects, saw '$reconnects'"
kill "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true
cmp "$T/disk.img" "$T/shadow" || fail "backing image differs after restarts"
echo "survived $reconnects restarts with no lost write"

# 2. The backend goes away for good, then comes back.
start_qsd "$T/disk.img" "$T/gone.sock"
"$PROBE" expect-eio "$T/gone.sock" 2 30 >"$T/gone.out" 2>&1 &
probe=$!
wait_for_file "$T/gone.sock.ready"; rm "$T/gone.sock.ready"
start=$SECONDS
kill -9 "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true
wait_for_file "$T/gone.sock.ready"
(( SECONDS - start <= 10 )) || fail "EIO took $((SECONDS - start)) s"
start_qsd "$T/disk.img" "$T/gone.sock"
wait $probe || { cat "$T/gone.out"; fail "backend-gone probe"; }
cat "$T/gone.out"

# 3. The backend hangs while connected.
start_qsd "$T/disk.img" "$T/stall.sock"
"$PROBE" expect-eio "$T/stall.sock" 2 1 >"$T/stall.out" 2>&1 &
probe=$!
wait_for_file "$T/stall.sock.ready"; rm "$T/stall.sock.ready"
kill -STOP "$QSD_PID"
wait_for_file "$T/stall.sock.ready"
kill -CONT "$QSD_PID"
wait $probe || { cat "$T/stall.out"; fail "stalled-backend probe"; }
cat "$T/stall.out"
kill "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true

# 4. The same with run to completion: stress threads each drive a queue
# across two restarts; a driven reader gets EIO from a frozen backend and
# recovers after SIGCONT.
cp "$T/disk.img" "$T/shadow"
start_qsd "$T/disk.img" "$T/driven.sock" num-queues=4
"$STRESS" "$T/driven.sock" "$T/shadow" --threads 4 --seconds 5 --queues 4 \
  --driven --reconnect-timeout 20 >"$T/driven.out" 2>&1 &
stress=$!
on_exit "kill $stress"
for i in 1 2; do
  sleep 1.5
  kill -9 "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true
  sleep 0.2
  start_qsd "$T/disk.img" "$T/driven.sock" num-queues=4
done
wait $stress || { cat "$T/driven.out"; fail "driven I/O failed across restarts"; }
reconnects=$(sed -n 's/^reconnects: //p' "$T/driven.out")
[[ $reconnects -ge 2 ]] || fail "driven: expected >= 2 reconnects, saw '$reconnects'"
kill "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true
cmp "$T/disk.img" "$T/shadow" || fail "driven: backing image differs after restarts"
echo "driven queues survived $reconnects restarts with no lost write"

start_qsd "$T/disk.img" "$T/dstall.sock"
"$PROBE" expect-eio "$T/dstall.sock" 2 1 driven >"$T/dstall.out" 2>&1 &
probe=$!
on_exit "kill $probe"
wait_for_file "$T/dstall.sock.ready"; rm "$T/dstall.sock.ready"
kill -STOP "$QSD_PID"
wait_for_file "$T/dstall.sock.ready"
kill -CONT "$QSD_PID"
wait $probe || { cat "$T/dstall.out"; fail "driven stalled-backend probe"; }
cat "$T/dstall.out"
kill "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true

echo "all reliability checks passed"
