#!/usr/bin/env bash
# Backend restarts seen through each frontend.  qemu-storage-daemon
# (throttled so a copy spans several restarts) is killed with -9 and
# restarted on the same socket three times while data is written through
# nbdkit vhostuser (nbdcopy), vublk-fuse (dd with O_DIRECT, then fio) and
# vublk copy: every write succeeds and the backing image equals the data.
# Then a backend that never comes back: reads through the plugin and the
# FUSE file fail with EIO within the reconnect timeout, and the FUSE file
# still unmounts.
. "$(dirname "$0")/lib.sh"
requires qemu-storage-daemon cmp timeout
RESTARTS=3
S=$T/v.sock

# qsd_throttled: qemu-storage-daemon on $T/disk.img, writes limited to
# 16 MiB/s (a 64 MiB write lasts 4 s, past the restarts); its pid goes to
# $T/qsd.pid.
qsd_throttled() {
  rm -f "$S"
  qemu-storage-daemon \
    --object throttle-group,id=tg0,x-bps-write=16777216 \
    --blockdev "driver=file,node-name=file0,filename=$T/disk.img,cache.direct=off" \
    --blockdev "driver=throttle,node-name=thr0,throttle-group=tg0,file=file0" \
    --export "type=vhost-user-blk,id=exp0,node-name=thr0,addr.type=unix,addr.path=$S,writable=on,num-queues=2" \
    >>"$T/qsd.log" 2>&1 &
  echo $! >"$T/qsd.pid"
  wait_for_socket "$S"
}
on_exit 'kill -9 $(cat "$T/qsd.pid")'

# restarter CMD-PID: once the first write reached the image (the frontend
# is connected and writing), kills and restarts the backend $RESTARTS
# times, 0.7 s apart, while CMD-PID runs; the count reached goes to
# $T/restarts.
restarter() {
  local cmd=$1 i
  for ((i = 0; i < 400; i++)); do
    [[ $T/disk.img -nt $T/started ]] && break
    kill -0 "$cmd" 2>/dev/null || return 0
    sleep 0.05
  done
  echo 0 >"$T/restarts"
  for ((i = 1; i <= RESTARTS; i++)); do
    sleep 0.7
    kill -0 "$cmd" 2>/dev/null || return 0
    kill -9 "$(cat "$T/qsd.pid")"
    sleep 0.3
    qsd_throttled
    echo "$i" >"$T/restarts"
  done
}

# with_restarts NAME CMD...: runs CMD (which must succeed) while the
# backend restarts; checks that all restarts came while it ran.
with_restarts() {
  local name=$1 cmd r rc=0; shift
  rm -f "$T/restarts"
  touch "$T/started"
  sleep 0.01                 # the image's next write is newer than this
  "$@" &
  cmd=$!
  on_exit "kill $cmd"
  restarter "$cmd" &
  r=$!
  on_exit "kill $r"      # a failed test leaves no restarter behind
  wait "$cmd" || rc=$?
  ((rc == 0)) || fail "$name: the write failed across backend restarts (exit $rc)"
  wait "$r"
  [[ $(cat "$T/restarts" 2>/dev/null) == "$RESTARTS" ]] \
    || fail "$name: ended after $(cat "$T/restarts" 2>/dev/null || echo no) of $RESTARTS" \
            "restarts (the backend is throttled so that it lasts long enough)"
  echo "ok: $name survived $RESTARTS kill -9 restarts"
}

make_random_image "$T/data" 64M
truncate -s 64M "$T/disk.img"
qsd_throttled

# nbdkit vhostuser + nbdcopy.
if command -v nbdkit >/dev/null && command -v nbdcopy >/dev/null \
   && ! plugin_is_instrumented; then
  start_nbdkit restarts "$VUBLK_PLUGIN" socket="$S"
  with_restarts "nbdkit plugin (nbdcopy)" \
    nbdcopy --flush "$T/data" "nbd+unix:///?socket=$T/restarts.nbd"
  stop_nbdkit
  plugin_tested=true
  cmp "$T/data" "$T/disk.img" || fail "plugin: backing image differs from the data"
fi

# vublk-fuse + dd (O_DIRECT, fsync), then fio with verification.
if command -v fusermount3 >/dev/null; then
  make_random_image "$T/data" 64M
  touch "$T/file"
  # Relative SOCKET and --pidfile: the daemon changes to "/" once ready,
  # and must still reconnect to the same socket and remove its pid file.
  (cd "$T" && "$VUBLK_FUSE_BIN" -d --pidfile rel.pid "$(basename "$S")" file) \
    || fail "vublk-fuse -d with a relative socket"
  FUSE_PID=$(cat "$T/rel.pid")
  on_exit "fusermount3 -u '$T/file'; kill -9 $FUSE_PID"
  with_restarts "vublk-fuse (dd, relative socket path)" \
    dd if="$T/data" of="$T/file" bs=1M oflag=direct conv=notrunc,fsync status=none
  unmount_fuse "$T/file" "$FUSE_PID"
  [[ ! -e $T/rel.pid ]] || fail "vublk-fuse -d left its relative --pidfile behind"
  cmp "$T/data" "$T/disk.img" || fail "vublk-fuse: backing image differs from the data"
  if command -v fio >/dev/null; then
    mount_fuse "$S" "$T/file"
    with_restarts "vublk-fuse (fio verify)" \
      fio --name=v --filename="$T/file" --direct=1 --ioengine=libaio --iodepth=16 \
          --rw=randwrite --bs=64k --size=48M --verify=crc32c --verify_fatal=1 \
          --verify_state_save=0 --fallocate=none --output="$T/fio.out"
    grep -q "err= 0" "$T/fio.out" || fail "fio reported errors: $(cat "$T/fio.out")"
    unmount_fuse "$T/file" "$FUSE_PID"
  fi
fi

# vublk copy.
make_random_image "$T/data" 64M
with_restarts "vublk copy" "$VUBLK_BIN" copy "$T/data" "vhost-user:$S"
cmp "$T/data" "$T/disk.img" || fail "vublk copy: backing image differs from the data"

# A backend that never comes back: EIO within the reconnect timeout (2 s)
# plus slack, through the plugin and through the FUSE file.
check_eio() {   # check_eio NAME START: $T/err must say EIO, in time
  local name=$1 start=$2 took
  took=$((SECONDS - start))
  grep -qi "input/output error\|EIO" "$T/err" || fail "$name: expected EIO, got: $(cat "$T/err")"
  ((took <= 10)) || fail "$name: EIO took $took s"
  echo "ok: $name -> EIO after $took s with the backend gone"
}
# (qemu-storage-daemon serves one client at a time: one frontend each.)
if [[ ${plugin_tested:-} == true ]]; then
  start_nbdkit gone "$VUBLK_PLUGIN" socket="$S" reconnect-timeout=2
  kill -9 "$(cat "$T/qsd.pid")"
  start=$SECONDS
  # One read at a time: nbdkit before 1.33.10 can abort when a client
  # hangs up while other replies are still queued (nbdkit commit
  # 9d82aa4f), which nbdcopy does on its first error.
  if timeout 30 /usr/bin/nbdsh -u "nbd+unix:///?socket=$T/gone.nbd" \
       -c 'h.pread(4096, 409600)' 2>"$T/err"; then
    fail "plugin: a read succeeded with the backend gone"
  fi
  check_eio "plugin read" $start
  stop_nbdkit
  qsd_throttled
fi
if command -v fusermount3 >/dev/null; then
  mount_fuse "$S" "$T/file" --reconnect-timeout 2
  kill -9 "$(cat "$T/qsd.pid")"
  start=$SECONDS
  if timeout 30 dd if="$T/file" of=/dev/null bs=4k count=1 skip=100 iflag=direct 2>"$T/err"; then
    fail "FUSE: a read succeeded with the backend gone"
  fi
  check_eio "FUSE read" $start
  timeout 20 fusermount3 -u "$T/file" || fail "fusermount3 -u with the backend gone"
  exited_within "$FUSE_PID" 10 || fail "vublk-fuse still running after unmount"
  echo "ok: fusermount3 -u works with the backend gone"
fi
echo PASS
