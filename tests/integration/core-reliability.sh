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

# stress_across_restarts LABEL NAME QUEUES RESTARTS INTERVAL SECONDS
#                        [STRESS-OPTION...]
# Runs vublk_stress with write/verify threads on $T/NAME.sock (QUEUES
# queues) for SECONDS, kill -9s and restarts the backend RESTARTS times,
# INTERVAL seconds apart, then checks that every write succeeded, that
# each restart was a reconnect and that the image equals the shadow.
stress_across_restarts() {
  local label=$1 name=$2 queues=$3 restarts=$4 interval=$5 seconds=$6
  local sock=$T/$name.sock out=$T/$name.out stress reconnects i
  shift 6
  cp "$T/disk.img" "$T/shadow"
  start_qsd "$T/disk.img" "$sock" num-queues="$queues"
  "$STRESS" "$sock" "$T/shadow" --threads 4 --seconds "$seconds" \
    --queues "$queues" --reconnect-timeout 20 "$@" >"$out" 2>&1 &
  stress=$!
  on_exit "kill $stress"
  for ((i = 0; i < restarts; i++)); do
    sleep "$interval"
    kill -0 "$stress" 2>/dev/null \
      || fail "${label}the stress run ended before restart $((i + 1)) of $restarts" \
              "(give it more --seconds): $(tail -3 "$out")"
    kill -9 "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true
    sleep 0.2
    start_qsd "$T/disk.img" "$sock" num-queues="$queues"
  done
  wait $stress || { cat "$out"; fail "${label}I/O failed across restarts"; }
  cat "$out"
  reconnects=$(sed -n 's/^reconnects: //p' "$out")
  [[ $reconnects -ge $restarts ]] \
    || fail "${label}expected >= $restarts reconnects, saw '$reconnects'"
  kill "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true
  cmp "$T/disk.img" "$T/shadow" || fail "${label}backing image differs after restarts"
  echo "${label}survived $reconnects restarts with no lost write"
}

# frozen_then_thawed LABEL NAME [PROBE-MODE]: a reader on $T/NAME.sock
# gets EIO while the backend is stopped with SIGSTOP (reconnect timeout
# 2 s, request timeout 1 s) and reads again after SIGCONT.
frozen_then_thawed() {
  local label=$1 name=$2 probe
  shift 2
  start_qsd "$T/disk.img" "$T/$name.sock"
  "$PROBE" expect-eio "$T/$name.sock" 2 1 "$@" >"$T/$name.out" 2>&1 &
  probe=$!
  on_exit "kill $probe"
  wait_for_file "$T/$name.sock.ready"; rm "$T/$name.sock.ready"
  kill -STOP "$QSD_PID"
  wait_for_file "$T/$name.sock.ready"
  kill -CONT "$QSD_PID"
  wait $probe || { cat "$T/$name.out"; fail "${label}stalled-backend probe"; }
  cat "$T/$name.out"
  kill "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true
}

# 1. Restarts under load.
make_random_image "$T/disk.img" 16M
# (The stress runs 10 s: 4 restarts take about 6, more on a loaded machine.)
stress_across_restarts "" vhost 2 4 1.2 10

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

# 2b. vublk_close while the control thread reconnects (the test holds the
#     reconnect for 2 s between its handshake and its state change): the
#     close must win, and return once the reconnect is done with.
start_qsd "$T/disk.img" "$T/closing.sock"
VUBLK_TEST_RECONNECT_PAUSE_MS=2000 timeout 20 "$PROBE" close-during-reconnect \
  "$T/closing.sock" >"$T/closing.out" 2>&1 &
probe=$!
wait_for_file "$T/closing.sock.ready"
kill -9 "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true
start_qsd "$T/disk.img" "$T/closing.sock"
rc=0; wait $probe || rc=$?
[[ $rc == 0 ]] || fail "vublk_close during a reconnect: status $rc (124: hung): $(cat "$T/closing.out")"
cat "$T/closing.out"

# 3. The backend hangs while connected.
frozen_then_thawed "" stall

# 4. The same with run to completion: stress threads each drive a queue
# across two restarts; a driven reader gets EIO from a frozen backend and
# recovers after SIGCONT.
stress_across_restarts "driven: " driven 4 2 1.5 7 --driven
frozen_then_thawed "driven: " dstall driven

echo "all reliability checks passed"
