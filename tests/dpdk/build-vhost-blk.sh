#!/usr/bin/env bash
# build-vhost-blk.sh OUTDIR: builds DPDK's vhost-user-blk example backend
# (the one Debian's dpdk-doc ships in /usr/share/dpdk/examples/vhost_blk,
# which reuses SPDK's vhost-blk code) into OUTDIR/build/vhost-blk, once:
# later calls find it built and return at once.  Concurrent callers (ctest
# -j) are serialised with flock on OUTDIR.lock.  Prints the binary's path.
#
# Exit status: 0 built, 77 when the package or the tools are missing (the
# tests skip), 1 when the build itself fails.
set -euo pipefail
export PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH

out=${1:?usage: build-vhost-blk.sh OUTDIR}
src=${DPDK_VHOST_BLK_SRC:-/usr/share/dpdk/examples/vhost_blk}
bin=$out/build/vhost-blk

skip() { echo "SKIP: $*" >&2; exit 77; }
[[ -f $src/Makefile ]] || skip "$src not found (Debian package dpdk-doc)"
for tool in make cc pkg-config flock; do
  command -v "$tool" >/dev/null || skip "$tool not found"
done
pkg-config --exists libdpdk || skip "pkg-config finds no libdpdk (Debian package dpdk-dev)"

mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock -w 300 9 || { echo "build-vhost-blk.sh: $out.lock held for 300 s" >&2; exit 1; }
if [[ ! -x $bin ]]; then
  rm -rf "$out"
  cp -r "$src" "$out"
  # The example's Makefile asks pkg-config for libdpdk's flags itself.
  if ! timeout 300 make -C "$out" >"$out.log" 2>&1; then
    cat "$out.log" >&2
    echo "build-vhost-blk.sh: building $src failed (log above)" >&2
    exit 1
  fi
fi
echo "$bin"
