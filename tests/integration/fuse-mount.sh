#!/usr/bin/env bash
# vublk-fuse mounting: over a file and in a directory (--filename), mode and
# owner from the mountpoint, the mount's name, read-only (-r and a
# read-only export), -d failing with a message, usage errors, SIGTERM and
# SIGINT unmounting cleanly, --help and --version; -d against a busy
# backend, -d whose parent is killed, -v logging a backend restart, and
# without -v, the restart's warning in syslog.
. "$(dirname "$0")/lib.sh"
requires qemu-storage-daemon fusermount3 cmp pgrep timeout
F=$VUBLK_FUSE_BIN

make_random_image "$T/disk.img" 16M
cp "$T/disk.img" "$T/orig.img"
start_qsd "$T/disk.img" "$T/v.sock"
MAIN_QSD=$QSD_PID

# Over a regular file: mode and owner are the file's.
touch "$T/file"; chmod 0640 "$T/file"; chown 1234:5678 "$T/file"
mount_fuse "$T/v.sock" "$T/file"
[[ $(stat -c '%a %u %g %F' "$T/file") == "640 1234 5678 regular file" ]] \
  || fail "attributes over a file: $(stat -c '%a %u %g %F' "$T/file")"
grep -q "^vublk $T/file fuse.vublk " /proc/mounts || fail "mount name"
cmp "$T/file" "$T/orig.img" || fail "file content"
unmount_fuse "$T/file" "$FUSE_PID"
[[ $(stat -c %s "$T/file") == 0 ]] || fail "the mountpoint file changed"

# In a directory: one file, 'disk', or the --filename given.
mkdir "$T/dir"
mount_fuse "$T/v.sock" "$T/dir"
[[ $(ls -A "$T/dir") == disk ]] || fail "directory lists: $(ls -A "$T/dir")"
cmp "$T/dir/disk" "$T/orig.img" || fail "disk content"
[[ ! -e $T/dir/other ]] || fail "a second file exists"
if touch "$T/dir/other" 2>/dev/null; then fail "created a file"; fi
# Every change to the names is refused as not permitted (not as a
# function that is not implemented).
for cmd in "touch $T/dir/other" "rm $T/dir/disk" "mkdir $T/dir/sub" \
           "mv $T/dir/disk $T/dir/renamed" "ln $T/dir/disk $T/dir/hard" \
           "ln -s disk $T/dir/soft" "mknod $T/dir/fifo p"; do
  if $cmd 2>"$T/err"; then fail "$cmd succeeded in a directory mount"; fi
  grep -q "Operation not permitted" "$T/err" || fail "$cmd: $(cat "$T/err")"
done
[[ $(ls -A "$T/dir") == disk ]] || fail "the names changed: $(ls -A "$T/dir")"
unmount_fuse "$T/dir" "$FUSE_PID"
mount_fuse "$T/v.sock" "$T/dir" --filename vda.raw
[[ $(ls -A "$T/dir") == vda.raw ]] || fail "--filename: $(ls -A "$T/dir")"
cmp "$T/dir/vda.raw" "$T/orig.img" || fail "vda.raw content"
unmount_fuse "$T/dir" "$FUSE_PID"

# -r: mounted read-only, writes fail with EROFS, reads work.
mount_fuse "$T/v.sock" "$T/file" -r
grep -q " $T/file fuse.vublk ro," /proc/mounts || fail "-r is not a ro mount"
if dd if=/dev/zero of="$T/file" bs=512 count=1 conv=notrunc 2>"$T/err"; then
  fail "-r accepted a write"
fi
grep -q "Read-only file system" "$T/err" || fail "-r write: $(cat "$T/err")"
if fallocate -p -o 0 -l 4096 "$T/file" 2>/dev/null; then fail "-r punched"; fi
cmp "$T/file" "$T/orig.img" || fail "-r content"
ro_mode=$(stat -c %a "$T/file")
unmount_fuse "$T/file" "$FUSE_PID"
cmp "$T/disk.img" "$T/orig.img" || fail "-r changed the image"
# -o ro is -r: the file's mode says so too.
mount_fuse "$T/v.sock" "$T/file" -o ro
[[ $(stat -c %a "$T/file") == "$ro_mode" ]] \
  || fail "-o ro: mode $(stat -c %a "$T/file"), -r gives $ro_mode"
unmount_fuse "$T/file" "$FUSE_PID"
# The last of ro and rw decides, as for the kernel.
mount_fuse "$T/v.sock" "$T/file" -o nosuid,ro -o rw
[[ $(stat -c %a "$T/file") != "$ro_mode" ]] || fail "-o ro -o rw: read-only"
grep -q " $T/file fuse.vublk rw," /proc/mounts || fail "-o ro -o rw: not a rw mount"
unmount_fuse "$T/file" "$FUSE_PID"
# "ro" after an escaped comma is part of a value, as libfuse reads it,
# and "ro" among other options still counts.
mount_fuse "$T/v.sock" "$T/file" -o 'fsname=a\,ro'
[[ $(stat -c %a "$T/file") != "$ro_mode" ]] || fail "-o fsname=a\\,ro: read-only"
grep -q " $T/file fuse.vublk rw," /proc/mounts || fail "-o fsname=a\\,ro: not a rw mount"
unmount_fuse "$T/file" "$FUSE_PID"
mount_fuse "$T/v.sock" "$T/file" -o rw,ro,nosuid
[[ $(stat -c %a "$T/file") == "$ro_mode" ]] || fail "-o rw,ro,nosuid: mode $(stat -c %a "$T/file")"
unmount_fuse "$T/file" "$FUSE_PID"
# -r under a mount the kernel thinks writable (-o rw after it): even the
# size-0 truncation that a writable mount ignores as O_TRUNC is refused.
mount_fuse "$T/v.sock" "$T/file" -r -o rw
/usr/bin/python3 -c 'import errno, os, sys
try:
    os.truncate(sys.argv[1], 0)
except OSError as e:
    sys.exit(0 if e.errno == errno.EROFS else "errno %d" % e.errno)
sys.exit("truncate succeeded")' "$T/file" || fail "-r -o rw: truncate to 0 not refused with EROFS"
unmount_fuse "$T/file" "$FUSE_PID"

# A read-only export mounts read-only without -r.
start_qsd "$T/disk.img" "$T/ro.sock" writable=off
mount_fuse "$T/ro.sock" "$T/file"
grep -q " $T/file fuse.vublk ro," /proc/mounts || fail "RO export is not a ro mount"
[[ $(stat -c %a "$T/file") == 440 ]] || fail "RO mode $(stat -c %a "$T/file")"
if (echo x >"$T/file") 2>/dev/null; then fail "RO export accepted a write"; fi
unmount_fuse "$T/file" "$FUSE_PID"
kill -9 "$QSD_PID"; wait "$QSD_PID" 2>/dev/null || true

# -d fails with a message and exit 1 when the socket is wrong; usage
# errors exit 2 naming what was wrong.
set +e
"$F" -d "$T/nothing.sock" "$T/file" 2>"$T/err"; rc=$?
set -e
[[ $rc == 1 ]] || fail "-d with a bad socket exited $rc"
grep -q "nothing.sock" "$T/err" || fail "-d bad socket message: $(cat "$T/err")"
grep -q " $T/file fuse.vublk" /proc/mounts && fail "a failed mount is left behind"
expect_usage() {
  local want=$1; shift
  set +e; "$F" "$@" 2>"$T/err"; local rc=$?; set -e
  [[ $rc == 2 ]] || fail "vublk-fuse $* exited $rc"
  grep -q -- "$want" "$T/err" || fail "vublk-fuse $*: $(cat "$T/err")"
}
expect_usage "expected SOCKET and MOUNTPOINT" "$T/v.sock"
(($(wc -l <"$T/err") == 1)) || fail "a missing MOUNTPOINT printed more than one line: $(cat "$T/err")"
expect_usage "--filename names the file of a directory mount" --filename x "$T/v.sock" "$T/file"
expect_usage "no-such" "$T/v.sock" "$T/no-such"
expect_usage "neither a regular file nor a directory" "$T/v.sock" /dev/null
expect_usage "--queues" --queues 0 "$T/v.sock" "$T/file"
expect_usage "--queue-size" --queue-size 100 "$T/v.sock" "$T/file"
expect_usage "--filename" --filename a/b "$T/v.sock" "$T/dir"
# Refused before connecting: a socket that does not exist is never tried.
expect_usage "invalid FUSE options 'badopt'" -o badopt "$T/no.sock" "$T/file"
expect_usage "no SOCKET given" "" "$T/file"
expect_usage "--reconnect-timeout" --reconnect-timeout -1 "$T/v.sock" "$T/file"
expect_usage "--spin" --spin 20000 "$T/v.sock" "$T/file"
expect_usage "unknown option" --bogus "$T/v.sock" "$T/file"
expect_usage "unknown option '-x'" -xr "$T/v.sock" "$T/file"
expect_usage "option '--threads' needs a value" --threads
expect_usage "option '-o' needs a value" -o
expect_usage "option '--readonly' takes no value" --readonly=yes "$T/v.sock" "$T/file"
expect_usage "unknown option '--clone' (options are written whole" --clone "$T/v.sock" "$T/file"
expect_usage "no SOCKET given" vhost-user: "$T/file"
"$F" --help | grep -q "Usage: vublk-fuse" || fail "--help"
"$F" --version | grep -q "^vublk-fuse " || fail "--version"

# Foreground: SIGTERM and SIGINT flush, unmount and exit 0.
for sig in TERM INT; do
  "$F" "$T/v.sock" "$T/file" 2>"$T/fg.err" &
  pid=$!
  for ((i = 0; i < 200; i++)); do
    grep -q " $T/file fuse.vublk " /proc/mounts && break
    sleep 0.05
  done
  grep -q " $T/file fuse.vublk " /proc/mounts || fail "foreground mount"
  head -c 4096 /dev/urandom >"$T/chunk"
  dd if="$T/chunk" of="$T/file" bs=4096 seek=7 conv=notrunc status=none
  kill -$sig $pid
  set +e; wait $pid; rc=$?; set -e
  [[ $rc == 0 ]] || fail "SIG$sig: exit $rc: $(cat "$T/fg.err")"
  grep -q " $T/file fuse.vublk " /proc/mounts && fail "SIG$sig left the mount"
  cmp -n 4096 -i 0:28672 "$T/chunk" "$T/disk.img" || fail "SIG$sig lost a write"
done
# A busy backend (qemu-storage-daemon serves one client at a time; a
# first vublk-fuse holds it): vublk-fuse -d fails within the connect
# timeout with a message saying the backend is busy.
touch "$T/busy"
mount_fuse "$T/v.sock" "$T/file"
first=$FUSE_PID
start=$SECONDS
set +e
timeout 30 "$F" -d --connect-timeout 2 "$T/v.sock" "$T/busy" 2>"$T/err"; rc=$?
set -e
((rc != 0 && rc != 124)) || fail "-d against a busy backend exited $rc"
grep -qi "busy" "$T/err" || fail "-d against a busy backend: $(cat "$T/err")"
((SECONDS - start <= 10)) || fail "-d against a busy backend took $((SECONDS - start)) s"
grep -q " $T/busy fuse.vublk" /proc/mounts && fail "mounted on a busy backend"
echo "ok: busy backend -> exit $rc after $((SECONDS - start)) s: $(head -1 "$T/err")"

# SIGTERM while vublk-fuse (foreground) waits for a busy backend, with a
# long connect timeout: it ends at once, mounting nothing.
"$F" --connect-timeout 20 "$T/v.sock" "$T/busy" 2>"$T/err" &
waiting=$!
sleep 0.5
kill -TERM "$waiting"
for ((i = 0; i < 40; i++)); do kill -0 "$waiting" 2>/dev/null || break; sleep 0.05; done
kill -0 "$waiting" 2>/dev/null && { kill -9 "$waiting"; fail "SIGTERM while opening the device was held back"; }
wait "$waiting" 2>/dev/null || true
grep -q " $T/busy fuse.vublk" /proc/mounts && fail "mounted after SIGTERM"
echo "ok: SIGTERM while waiting for a busy backend -> ended within 2 s"

# A daemonizing vublk-fuse whose parent is killed while the child waits
# for the busy backend must not mount once the backend is free again.
"$F" -d --pidfile "$T/orphan.pid" "$T/v.sock" "$T/busy" 2>"$T/err" &
parent=$!
sleep 1
child=$(pgrep -P "$parent" || true)
[[ -n $child ]] || fail "no background child of vublk-fuse -d while the backend is busy"
on_exit "kill -9 $child; fusermount3 -u '$T/busy'"
kill -9 "$parent"
wait "$parent" 2>/dev/null || true
unmount_fuse "$T/file" "$first"          # the backend is free now
for ((i = 0; i < 80; i++)); do
  grep -q " $T/busy fuse.vublk" /proc/mounts && fail "the orphaned child mounted"
  sleep 0.05
done
running "$child" && fail "the orphaned child (pid $child) is still running"
[[ -e $T/orphan.pid ]] && fail "the orphaned child wrote its pid file"
echo "ok: an orphaned vublk-fuse -d does not mount"

# A pid file that would be written through the mount itself (the file
# mounted on, or inside a mounted directory) is refused before anything
# is mounted: writing it would wait for the process that serves it.
mkdir -p "$T/dirmnt"
for pf in "$T/file" "$T/dirmnt/x.pid"; do
  mnt=$T/file; [[ $pf == */x.pid ]] && mnt=$T/dirmnt
  set +e
  timeout 10 "$F" -d --pidfile "$pf" "$T/v.sock" "$mnt" 2>"$T/err"
  rc=$?
  set -e
  [[ $rc == 2 ]] && grep -q "inside the mount point" "$T/err" \
    || fail "--pidfile $pf on mount $mnt: status $rc: $(cat "$T/err")"
  grep -q " $mnt fuse" /proc/mounts && fail "mounted $mnt despite the pid file"
done
echo "ok: --pidfile inside the mount point -> refused before mounting"

# -v: library events on stderr, which -d keeps open for them: a backend
# killed and restarted under the mount is reported as reconnected.  The
# socket in copy's vhost-user:SOCKET form, which vublk-fuse takes too.
"$F" -d -v --pidfile "$T/v.pid" "vhost-user:$T/v.sock" "$T/file" 2>"$T/verbose.log" \
  || fail "vublk-fuse -d -v: $(cat "$T/verbose.log")"
pid=$(cat "$T/v.pid")
on_exit "fusermount3 -u '$T/file'; kill -9 $pid"
kill -9 "$MAIN_QSD"
wait "$MAIN_QSD" 2>/dev/null || true
start_qsd "$T/disk.img" "$T/v.sock"
timeout 30 dd if="$T/file" of=/dev/null bs=4k count=1 iflag=direct status=none \
  || fail "read after the backend restart"
head -c 4096 /dev/urandom >"$T/chunk"
timeout 30 dd if="$T/chunk" of="$T/file" bs=4096 seek=3 oflag=direct conv=notrunc status=none \
  || fail "write after the backend restart"
for ((i = 0; i < 100; i++)); do
  grep -q "reconnected" "$T/verbose.log" && break
  sleep 0.05
done
grep -q "reconnected" "$T/verbose.log" || fail "-v logged no reconnect: $(cat "$T/verbose.log")"
unmount_fuse "$T/file" "$pid"
cmp -n 4096 -i 0:12288 "$T/chunk" "$T/disk.img" || fail "write after the restart lost"
echo "ok: -v logs the reconnect under -d"

# Without -v, -d lets go of stderr once mounted, and warnings go to
# syslog (before: to /dev/null).  A stand-in for syslog(3) (tests/shim)
# writes them to a file; the same restart must be there as a warning.
QSD_NOW=$QSD_PID
VUBLK_TEST_SYSLOG=$T/syslog LD_PRELOAD=$VUBLK_TESTS/libsyslog_capture.so \
  ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 \
  mount_fuse "$T/v.sock" "$T/file" 2>"$T/quiet.err"
pid=$FUSE_PID
kill -9 "$QSD_NOW"
wait "$QSD_NOW" 2>/dev/null || true
start_qsd "$T/disk.img" "$T/v.sock"
timeout 30 dd if="$T/file" of=/dev/null bs=4k count=1 iflag=direct status=none \
  || fail "read after the backend restart (syslog)"
wait_for_log "$T/syslog" "backend closed the connection" 5
grep -q "^4 warning: $T/v.sock: backend closed the connection; reconnecting$" "$T/syslog" \
  || fail "-d without -v: the restart is not in syslog: $(cat "$T/syslog" 2>&1)"
grep -q "reconnected" "$T/syslog" && fail "-d without -v: info lines in syslog: $(cat "$T/syslog")"
[[ ! -s $T/quiet.err ]] || fail "-d without -v wrote to the old stderr: $(cat "$T/quiet.err")"
unmount_fuse "$T/file" "$pid"
echo "ok: -d without -v logs warnings to syslog: $(head -1 "$T/syslog")"
echo PASS
