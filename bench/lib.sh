# bench/lib.sh — what the bench scripts share; sourced, never run.  The
# caller sets bench_name (the prefix of its messages) first.
#
# A scratch directory W on tmpfs that is removed at exit, together with
# every mount listed in mounts and every process listed in pids; bounded
# waits; qemu-storage-daemon over an image; the CPU ticks and read calls
# of processes; and the fio and qemu-img runs every script measures
# with, so that each measures a workload the same way.

# bench_usage SCRIPT: prints SCRIPT's header comment, from its second
# line to the end of the block, without the comment marks (its --help).
bench_usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$1"; }

# bench_scratch PREFIX: creates W=/dev/shm/PREFIX.XXXXXX, cleaned up at
# exit (mounts unmounted, pids killed, W removed).
bench_scratch() {
  W=$(mktemp -d "/dev/shm/$1.XXXXXX")
  pids=() mounts=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

bench_cleanup() {
  local m p
  for m in "${mounts[@]}"; do fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$W"
}

# fio_ramp: the seconds fio runs before it starts counting, in every
# script that runs fio (their --ramp option).
fio_ramp=1

# bench_check_seconds OPTION VALUE MIN: exits 2, naming OPTION, unless
# VALUE is a whole number of seconds, at least MIN.
bench_check_seconds() {
  [[ $2 =~ ^[0-9]+$ ]] && ((10#$2 >= $3)) \
    || { echo "$bench_name: $1 takes whole seconds, at least $3, not '$2'" >&2; exit 2; }
}

# bench_check_reps VALUE: exits 2 unless VALUE (--reps) is a positive
# integer.
bench_check_reps() {
  [[ $1 =~ ^[1-9][0-9]*$ ]] \
    || { echo "$bench_name: --reps must be a positive integer" >&2; exit 2; }
}

# The queues the plugin's backend exports and the plugin uses: one for
# each of nbdkit's worker threads (16 by default), which each drive one
# of their own (thread-queues), and one more to share, as the plugin's
# man page advises.
plugin_queues=17

# qsd_over_image NAME IMAGE AIO ARGS...: starts a qemu-storage-daemon
# serving IMAGE (raw, through the page cache, aio=AIO) with ARGS (its
# exports) in the background, logging to $W/NAME.log; its pid goes to
# pids and to qsd_last_pid.
qsd_over_image() {
  local name=$1 image=$2 aio=$3; shift 3
  qemu-storage-daemon \
    --blockdev "driver=file,node-name=file0,filename=$image,cache.direct=off,locking=off,aio=$aio" \
    --blockdev "driver=raw,node-name=disk0,file=file0" \
    "$@" >"$W/$name.log" 2>&1 &
  qsd_last_pid=$!
  pids+=($qsd_last_pid)
}

wait_for() {   # wait_for TEST-ARGS...: up to 20 s
  local i
  for ((i = 0; i < 400; i++)); do test "$@" && return 0; sleep 0.05; done
  echo "$bench_name: timed out waiting for: test $*" >&2; exit 1
}

wait_mounted() {   # wait_mounted PATH: up to 20 s for a FUSE mount there
  local i
  for ((i = 0; i < 400; i++)); do grep -q " $1 fuse" /proc/mounts && return 0; sleep 0.05; done
  echo "$bench_name: $1 was not mounted" >&2; exit 1
}

cpu_ticks() {   # cpu_ticks PID...: user+system clock ticks of all of them (- skipped)
  local p t=0
  for p in "$@"; do
    [[ $p == - ]] && continue
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo $t
}

read_calls() {   # read_calls PID: how many read system calls it made so far
  awk '/^syscr:/ {print $2}' /proc/"$1"/io 2>/dev/null || echo 0
}

write_calls() {   # write_calls PID: how many write system calls it made so far
  awk '/^syscw:/ {print $2}' /proc/"$1"/io 2>/dev/null || echo 0
}

# fio_start KIND URI WORKLOAD SIZE RUNTIME: starts fio in the background
# (fio_pid) on a file (KIND file: io_uring, O_DIRECT) or an NBD URI (KIND
# nbd: fio's nbd engine).  Workloads: randread, randwrite (4k, QD32),
# randread@D, randwrite@D (4k at queue depth D), qd1 (4k random reads,
# QD1), seqread, seqwrite (1 MiB, QD8).
fio_start() {
  local kind=$1 uri=$2 rw qd io
  case $3 in
    randread) rw=randread fio_bs=4k qd=32 ;;
    randwrite) rw=randwrite fio_bs=4k qd=32 ;;
    randread@[1-9]*|randwrite@[1-9]*) rw=${3%@*} fio_bs=4k qd=${3#*@} ;;
    qd1) rw=randread fio_bs=4k qd=1 ;;
    seqread) rw=read fio_bs=1M qd=8 ;;
    seqwrite) rw=write fio_bs=1M qd=8 ;;
    *) echo "$bench_name: unknown workload '$3'" >&2; exit 1 ;;
  esac
  io=(--ioengine=io_uring --direct=1 --filename="$uri")
  [[ $kind == nbd ]] && io=(--ioengine=nbd --uri="$uri")
  # fio_rate_iops (optional): cap the rate, to compare CPU per request
  # at the same rate as another endpoint.
  fio --name=b "${io[@]}" --rw=$rw --bs=$fio_bs --iodepth=$qd --size="$4" \
      ${fio_rate_iops:+--rate_iops="$fio_rate_iops"} --time_based --runtime="$5" --ramp_time="$fio_ramp" --norandommap \
      --randrepeat=0 --output-format=json --output="$W/fio.json" >"$W/fio.err" 2>&1 &
  fio_pid=$!
}

# fio_result LABEL [CPU-FILE "FIO FRONT BACK T0 T1"]: waits for the fio
# that fio_start began and prints IOPS (4k) or MiB/s (1 MiB).  With the
# CPU arguments (tick counts of fio, the frontend and the backend between
# times T0 and T1) a 4k run also appends "LABEL FIO FRONT BACK" in us of
# CPU per request to CPU-FILE.
fio_result() {
  wait "$fio_pid" \
    || { cat "$W/fio.err" >&2; echo "$bench_name: fio on $1 failed" >&2; exit 1; }
  python3 - "$W/fio.json" "$fio_bs" "$1" "${2:-}" "$(getconf CLK_TCK)" \
    ${3:+"$3"} <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
t = j["read"] if j["read"]["io_bytes"] else j["write"]
print(f'{t["iops"]:.0f}' if sys.argv[2] == "4k" else f'{t["bw"] / 1024:.0f}')
if len(sys.argv) > 6 and sys.argv[2] == "4k" and t["iops"]:
    fio, front, back, t0, t1 = (float(x) for x in sys.argv[6].split())
    per = 1e6 / int(sys.argv[5]) / ((t1 - t0) * t["iops"])   # us per tick per request
    with open(sys.argv[4], "a") as f:
        f.write(f"{sys.argv[3]} {fio * per:.2f} {front * per:.2f} {back * per:.2f}\n")
PY
}

# convert_seconds SOURCE SIZE LABEL: prints how long qemu-img takes to
# convert SOURCE (a file or an NBD URI) of SIZE bytes to null-co.
convert_seconds() {
  local t0 t1
  t0=$(date +%s.%N)
  qemu-img convert -f raw -n -W -m 16 "$1" \
    --target-image-opts "driver=null-co,size=$2" 2>"$W/convert.err" \
    || { cat "$W/convert.err" >&2; echo "$bench_name: convert from $3 failed" >&2; exit 1; }
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1 - $t0:.2f}')"
}
