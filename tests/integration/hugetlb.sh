#!/usr/bin/env bash
# Shared memory in 2 MiB huge pages (--memory hugetlb), as SPDK's NVMe and
# RDMA backends need, against qemu-storage-daemon: vublk info reports it,
# vublk copy both ways and the core's shadow-checked random I/O work on
# it, and with no huge page free it falls back to ordinary memory with a
# warning instead of failing.  Reserves huge pages in
# /proc/sys/vm/nr_hugepages (root) and puts the old value back at exit.
. "$(dirname "$0")/lib.sh"
requires qemu-storage-daemon cmp
[[ -w /proc/sys/vm/nr_hugepages ]] || { echo "SKIP: cannot reserve huge pages (not root)" >&2; exit 77; }
S=$T/v.sock
STRESS=$VUBLK_TESTS/vublk_stress

old_pages=$(cat /proc/sys/vm/nr_hugepages)
on_exit "echo $old_pages > /proc/sys/vm/nr_hugepages"
# 64 MiB pool + rings: 34 pages; two devices may be open at once below.
echo $((old_pages + 80)) >/proc/sys/vm/nr_hugepages
free=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
((free >= 34)) || { echo "SKIP: only $free huge pages could be reserved" >&2; exit 77; }

make_random_image "$T/disk.img" 32M
cp "$T/disk.img" "$T/shadow"
start_qsd "$T/disk.img" "$S" num-queues=2

"$VUBLK_BIN" info --memory hugetlb "$S" >"$T/info" 2>"$T/info.err" || fail "info: $(cat "$T/info.err")"
grep -q "^memory: *hugetlb" "$T/info" || fail "info does not say hugetlb: $(grep memory "$T/info")"
[[ ! -s $T/info.err ]] || fail "unexpected warning: $(cat "$T/info.err")"
echo "ok: $(grep ^memory "$T/info")"

"$STRESS" "$S" "$T/shadow" --threads 4 --ops 1500 --seed 11 --queues 2 \
  --memory hugetlb || fail "shadow-checked random I/O on huge pages"
echo "ok: random I/O on huge pages matches its shadow"

make_random_image "$T/data" 24M
"$VUBLK_BIN" copy --memory hugetlb "$T/data" "vhost-user:$S" || fail "copy in"
"$VUBLK_BIN" copy --memory hugetlb "vhost-user:$S" "$T/back" || fail "copy out"
cmp -n $((24 << 20)) "$T/data" "$T/back" || fail "copy on huge pages: data differs"
echo "ok: vublk copy both ways on huge pages"

# No huge page free: ordinary memory, a warning naming the cure, success.
echo "$old_pages" >/proc/sys/vm/nr_hugepages
if (($(awk '/HugePages_Free/ {print $2}' /proc/meminfo) < 34)); then
  "$VUBLK_BIN" info --memory hugetlb "$S" >"$T/info" 2>"$T/info.err" \
    || fail "info without huge pages failed: $(cat "$T/info.err")"
  grep -q "^memory: *normal" "$T/info" || fail "fallback: $(grep memory "$T/info")"
  grep -q "no huge pages" "$T/info.err" || fail "no warning on fallback: $(cat "$T/info.err")"
  grep -q "nr_hugepages" "$T/info.err" || fail "the warning does not say what to do"
  echo "ok: fallback: $(cat "$T/info.err")"
fi
