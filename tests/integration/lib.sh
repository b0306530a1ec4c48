# Shared helpers for the shell integration tests: start qemu-storage-daemon,
# wait for sockets, clean up.  Source it; it sets `set -euo pipefail`.
#
# Every test runs in its own scratch directory ($T) that is removed on exit,
# along with every process and mount it started.  Tests exit 77 (ctest's
# SKIP_RETURN_CODE) when a required tool is missing.
set -euo pipefail

# Debian's python3 must come first for nbdsh (see the project notes).
export PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH

: "${VUBLK_BUILD:?VUBLK_BUILD must name the build directory}"
VUBLK_BIN=$VUBLK_BUILD/cli/vublk
VUBLK_FUSE_BIN=$VUBLK_BUILD/fuse/vublk-fuse
VUBLK_PLUGIN=$VUBLK_BUILD/nbdkit-plugin/nbdkit-vhostuser-plugin.so

T=$(mktemp -d /tmp/vublk-test.XXXXXX)
_cleanup_cmds=()

# Registers a shell command to run at exit (last registered runs first).
on_exit() { _cleanup_cmds+=("$*"); }

_run_cleanup() {
  local rc=$?
  local i
  for ((i = ${#_cleanup_cmds[@]} - 1; i >= 0; i--)); do
    eval "${_cleanup_cmds[i]}" >/dev/null 2>&1 || true
  done
  rm -rf "$T"
  exit $rc
}
trap _run_cleanup EXIT
trap 'exit 130' INT TERM

# Exits 77 unless every named command exists.
requires() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || { echo "SKIP: $c not found" >&2; exit 77; }
  done
}

# Fails the test with a message.
fail() { echo "FAIL: $*" >&2; exit 1; }

# Waits up to 10 s for a UNIX socket to appear.
wait_for_socket() {
  local path=$1 i
  for ((i = 0; i < 200; i++)); do
    [[ -S $path ]] && return 0
    sleep 0.05
  done
  fail "socket $path did not appear"
}

# start_qsd IMAGE SOCKET [extra export options, e.g. num-queues=4
#   logical-block-size=4096 writable=off]
# Starts qemu-storage-daemon exporting IMAGE (raw) as vhost-user-blk on
# SOCKET; QSD_PID is its pid, and it is killed at exit.  A QMP monitor is on
# SOCKET.qmp.
start_qsd() {
  local image=$1 sock=$2; shift 2
  local writable=on extra=""
  local opt
  for opt in "$@"; do
    case $opt in
      writable=*) writable=${opt#writable=} ;;
      *) extra+=",$opt" ;;
    esac
  done
  rm -f "$sock"
  qemu-storage-daemon \
    --blockdev "driver=file,node-name=file0,filename=$image,cache.direct=off,discard=unmap" \
    --blockdev "driver=raw,node-name=disk0,file=file0,discard=unmap" \
    --export "type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path=$sock,writable=$writable$extra" \
    --chardev "socket,id=qmp0,path=$sock.qmp,server=on,wait=off" \
    --monitor chardev=qmp0 \
    >"$T/qsd.$(basename "$sock").log" 2>&1 &
  QSD_PID=$!
  on_exit "kill -9 $QSD_PID; wait $QSD_PID"
  wait_for_socket "$sock"
}

# Creates a file of SIZE bytes (e.g. 64M) filled with random data.
make_random_image() {
  local path=$1 size=$2
  head -c "$size" /dev/urandom >"$path"
}

# qmp SOCKET JSON-COMMAND: runs one QMP command on qemu-storage-daemon's
# monitor and prints the reply; fails if the reply is an error.
qmp() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
def cmd(c):
    f.write(json.dumps(c) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            return r
cmd({"execute": "qmp_capabilities"})
r = cmd(json.loads(sys.argv[2]))
print(json.dumps(r))
sys.exit(1 if "error" in r else 0)
PY
}

# Waits up to 20 s for FILE to exist.
# wait_for_log LOG PATTERN SECONDS: waits until LOG (which may not exist
# yet) has a line matching PATTERN (grep -E), failing after SECONDS.
wait_for_log() {
  local log=$1 pattern=$2 i
  for ((i = 0; i < $3 * 20; i++)); do
    grep -qE "$pattern" "$log" 2>/dev/null && return 0
    sleep 0.05
  done
  fail "no line matching '$pattern' in $log within $3 s: $(tail -20 "$log" 2>&1)"
}

wait_for_file() {
  local i
  for ((i = 0; i < 400; i++)); do
    [[ -e $1 ]] && return 0
    sleep 0.05
  done
  fail "$1 did not appear"
}

# mount_fuse SOCKET MOUNTPOINT [vublk-fuse options...]
# Mounts with vublk-fuse -d (which returns once the mount is ready) and
# registers an unmount at exit.  FUSE_PID is the daemon's pid.
mount_fuse() {
  local sock=$1 mnt=$2; shift 2
  local pidfile
  pidfile=$T/fuse.$(basename "$mnt").pid
  "$VUBLK_FUSE_BIN" -d --pidfile "$pidfile" "$@" "$sock" "$mnt" \
    || fail "vublk-fuse $* $sock $mnt failed"
  FUSE_PID=$(cat "$pidfile")
  on_exit "fusermount3 -u '$mnt'; kill -9 $FUSE_PID"
  grep -q " $mnt fuse.vublk " /proc/mounts || fail "$mnt is not in /proc/mounts"
}

# running PID: true while process PID exists and is not a zombie.  A
# daemon's parent is init, which may reap it late (or, in a container,
# never): kill -0 alone would see an exited daemon as running.
running() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

# exited_within PID SECONDS: true once process PID has exited (see
# running), false if it still runs after SECONDS.
exited_within() {
  local pid=$1 i
  for ((i = 0; i < $2 * 20; i++)); do
    running "$pid" || return 0
    sleep 0.05
  done
  ! running "$pid"
}

# unmount_fuse MOUNTPOINT PID: fusermount3 -u, then waits up to 20 s for
# the daemon to flush, close and exit.
unmount_fuse() {
  local mnt=$1 pid=$2
  fusermount3 -u "$mnt" || fail "fusermount3 -u $mnt"
  exited_within "$pid" 20 || fail "vublk-fuse (pid $pid) still running 20 s after unmount"
}

# start_nbdkit NAME ARGS...: runs `nbdkit -f` serving on $T/NAME.nbd
# (pid file $T/NAME.pid, log $T/NAME.log), killed at exit.  NBDKIT_PID is
# its pid; stop_nbdkit ends it earlier.
start_nbdkit() {
  local name=$1; shift
  # A socket left by an earlier nbdkit would pass wait_for_socket before
  # this one listens (its start-up probe takes a moment).
  rm -f "$T/$name.nbd"
  nbdkit -f -U "$T/$name.nbd" -P "$T/$name.pid" "$@" >"$T/$name.log" 2>&1 &
  NBDKIT_PID=$!
  on_exit "kill $NBDKIT_PID; wait $NBDKIT_PID"
  wait_for_socket "$T/$name.nbd"
  # The socket exists before the plugin has opened the device (nbdkit
  # accepts only after that): a client that gets an answer proves it.
  if command -v nbdinfo >/dev/null; then
    timeout 30 nbdinfo --size "nbd+unix:///?socket=$T/$name.nbd" >/dev/null 2>&1 \
      || fail "nbdkit ($name) did not answer within 30 s: $(tail -5 "$T/$name.log")"
  fi
}

stop_nbdkit() { kill "$NBDKIT_PID"; wait "$NBDKIT_PID" || true; }

# start_nbdkit_tcp NAME URI ARGS...: nbdkit ARGS on 127.0.0.1 at a random
# port below the kernel's ephemeral range (32768 up), which client
# sockets of parallel tests take; URI, with PORT in place of the port
# number, is what a client that proves it serves asks (nbdinfo --size).
# A port already taken (nbdkit exits) is retried with another, five
# times.  Sets TCP_PORT, TCP_URI and TCP_PID; output in $T/NAME.log.
start_nbdkit_tcp() {
  local name=$1 uri=$2 try i
  shift 2
  for try in 1 2 3 4 5; do
    TCP_PORT=$((10000 + RANDOM % 20000))
    # Taken already (something answers there): another port.
    (exec 3<>"/dev/tcp/127.0.0.1/$TCP_PORT") 2>/dev/null && continue
    TCP_URI=${uri//PORT/$TCP_PORT}
    nbdkit -f -i 127.0.0.1 -p "$TCP_PORT" "$@" >"$T/$name.log" 2>&1 &
    TCP_PID=$!
    for ((i = 0; i < 300; i++)); do
      nbdinfo --size "$TCP_URI" >/dev/null 2>&1 && break
      kill -0 "$TCP_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$TCP_PID" 2>/dev/null && break
    wait "$TCP_PID" 2>/dev/null || true
  done
  kill -0 "$TCP_PID" 2>/dev/null \
    || fail "nbdkit on TCP ($name) did not start: $(tail -5 "$T/$name.log")"
  on_exit "kill $TCP_PID; wait $TCP_PID"
  nbdinfo --size "$TCP_URI" >/dev/null 2>&1 \
    || fail "nbdkit on TCP ($name) did not answer within 30 s: $(tail -5 "$T/$name.log")"
}

# True if the nbdkit plugin is built with a sanitizer.  nbdkit itself is
# not, so such a plugin cannot be loaded (with the runtime preloaded,
# nbdkit hangs at start-up): those parts are skipped in sanitizer passes.
plugin_is_instrumented() {
  local syms
  syms=$(nm -D "$VUBLK_PLUGIN" 2>/dev/null || true)
  [[ $syms == *__asan_init* || $syms == *__tsan_init* || $syms == *__ubsan_handle* ]]
}

# --- DPDK's vhost-user-blk example backend (rte_vhost, SPDK's blk code) ---
# What it is (from its source, /usr/share/dpdk/examples/vhost_blk): a
# 128 MiB RAM disk, zeroed at every start, on DIR/vhost.socket (it always
# uses its working directory).  Offers VERSION_1, PROTOCOL_FEATURES,
# NOTIFY_ON_EMPTY and RING_PACKED only: no MQ, EVENT_IDX, INDIRECT_DESC,
# BLK_SIZE, SEG_MAX, SIZE_MAX, FLUSH, DISCARD or WRITE_ZEROES; its config
# says blk_size 4096 (without the feature bit) and num_queues 256, and
# GET_QUEUE_NUM answers 128, yet it serves queue 0 only.  One client at a
# time; a new client is accepted after the previous one leaves.

# Builds the example once per build tree and prints its path; exits 77
# (skip) when dpdk-dev or dpdk-doc is missing.
dpdk_blk_binary() {
  local rc=0
  DPDK_BLK_BIN=$(bash "$(dirname "${BASH_SOURCE[0]}")/../dpdk/build-vhost-blk.sh" \
                   "$VUBLK_BUILD/dpdk-vhost-blk") || rc=$?
  ((rc == 77)) && exit 77
  ((rc == 0)) || fail "building DPDK's vhost_blk example failed"
}

# reserve_hugepages N: adds N 2 MiB hugepages to the pool
# (/proc/sys/vm/nr_hugepages) and puts the old count back at exit; exits
# 77 if the kernel cannot reserve them.
reserve_hugepages() {
  local want=$1 old free
  [[ -w /proc/sys/vm/nr_hugepages ]] || { echo "SKIP: cannot set nr_hugepages" >&2; exit 77; }
  old=$(cat /proc/sys/vm/nr_hugepages)
  on_exit "echo $old >/proc/sys/vm/nr_hugepages"
  echo $((old + want)) >/proc/sys/vm/nr_hugepages || true
  free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
  ((free >= want)) || { echo "SKIP: only $free free hugepages, $want wanted" >&2; exit 77; }
}

# start_dpdk_blk DIR [huge]: starts DPDK's vhost-user-blk example in DIR
# (it creates DIR/vhost.socket; a stale socket from a killed instance is
# removed first, so a restart in the same DIR works).  Without `huge` it
# runs with --no-huge -m 512; with it, on 2 MiB hugepages (the caller
# reserves them: reserve_hugepages 80 covers its RAM disk) with --in-memory,
# which needs no hugetlbfs mount and leaves no page files behind.  Its
# output goes to DIR/dpdk.log.  DPDK_PID is its pid; it is killed at exit
# and its EAL runtime directory (/var/run/dpdk/PREFIX) removed.
start_dpdk_blk() {
  local dir=$1 mode=${2:-} prefix i bound
  local -a mem=(--no-huge -m 512)
  dpdk_blk_binary
  [[ $mode == huge ]] && mem=(--in-memory)
  mkdir -p "$dir"
  rm -f "$dir/vhost.socket"
  # dpdk.log is appended to across restarts: wait for one line more.
  bound=$(grep -c "binding succeeded" "$dir/dpdk.log" 2>/dev/null || true)
  prefix=vublk-$$-$RANDOM
  # stdbuf: the example prints with stdio, which a file would buffer.
  (cd "$dir" && exec stdbuf -oL -eL "$DPDK_BLK_BIN" "${mem[@]}" --no-pci -l 0 \
     --file-prefix "$prefix" >>"$dir/dpdk.log" 2>&1) &
  DPDK_PID=$!
  DPDK_PREFIX=$prefix
  on_exit "kill -9 $DPDK_PID; wait $DPDK_PID; rm -rf /var/run/dpdk/$prefix; rmdir /var/run/dpdk"
  # The socket exists from bind(); "binding succeeded" is logged just
  # before listen(), so wait for both and give listen() a moment.
  for ((i = 0; i < 200; i++)); do
    dpdk_listening "$dir" "${bound:-0}" && break
    kill -0 "$DPDK_PID" 2>/dev/null || fail "DPDK vhost_blk exited: $(tail -5 "$dir/dpdk.log")"
    sleep 0.05
  done
  dpdk_listening "$dir" "${bound:-0}" \
    || fail "DPDK vhost_blk was not listening within 10 s: $(tail -5 "$dir/dpdk.log")"
  sleep 0.1
}

# dpdk_listening DIR BOUND: true once DIR/vhost.socket exists and
# DIR/dpdk.log has more "binding succeeded" lines than BOUND (the count
# before this start).
dpdk_listening() {
  [[ -S $1/vhost.socket ]] && (($(grep -c "binding succeeded" "$1/dpdk.log") > $2))
}

# kill_dpdk_blk: kill -9 the running example (as a crash would) and reap it.
kill_dpdk_blk() {
  kill -9 "$DPDK_PID" 2>/dev/null || true
  wait "$DPDK_PID" 2>/dev/null || true
  rm -rf "/var/run/dpdk/$DPDK_PREFIX"
}
