#!/usr/bin/env bash
# cmake --install into a scratch root (DESTDIR): every file in place, the
# library exporting only vublk_* with its SONAME, man pages that render,
# the plugin loadable by nbdkit from where it was installed, and a tiny
# program built against `pkg-config vublk` that reads a real device.
. "$(dirname "$0")/lib.sh"
requires cmake pkg-config cc nm readelf qemu-storage-daemon
R=$T/root

DESTDIR=$R cmake --install "$VUBLK_BUILD" >"$T/install.log" || { cat "$T/install.log"; fail "install"; }
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$VUBLK_BUILD/CMakeCache.txt")
libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$VUBLK_BUILD/CMakeCache.txt")
plugindir=$(sed -n 's/^VUBLK_NBDKIT_PLUGINDIR:PATH=//p' "$VUBLK_BUILD/CMakeCache.txt")
P=$R$prefix
for f in bin/vublk bin/vublk-fuse include/vublk.h "$libdir/libvublk.so" \
         "$libdir/libvublk.so.1" "$libdir/pkgconfig/vublk.pc" \
         share/man/man1/vublk.1 share/man/man1/vublk-fuse.1 \
         share/man/man1/nbdkit-vhostuser-plugin.1 share/man/man3/libvublk.3 \
         share/doc/vublk/examples/vublk-fuse@.service; do
  [[ -e $P/$f ]] || fail "not installed: $prefix/$f"
done
[[ -e $R$plugindir/nbdkit-vhostuser-plugin.so ]] || fail "plugin not in $plugindir"

# The shared library: SONAME, and nothing but vublk_* exported.
readelf -d "$P/$libdir/libvublk.so.1" | grep -q 'SONAME.*libvublk.so.1' || fail "SONAME"
others=$(nm -D --defined-only "$P/$libdir/libvublk.so.1" | awk '$2 ~ /^[TDBR]$/ && $3 !~ /^vublk_/ {print $3}')
[[ -z $others ]] || fail "libvublk exports more than vublk_*: $others"
others=$(nm -D --defined-only "$R$plugindir/nbdkit-vhostuser-plugin.so" | awk '$2 ~ /^[TDBR]$/ && $3 != "plugin_init" {print $3}')
[[ -z $others ]] || fail "the plugin exports more than plugin_init: $others"

# Man pages render.
if command -v man >/dev/null; then
  for m in man1/vublk.1 man1/vublk-fuse.1 man1/nbdkit-vhostuser-plugin.1 man3/libvublk.3; do
    out=$(MANWIDTH=80 man -l "$P/share/man/$m" 2>&1) || fail "man -l $m: $out"
    for s in NAME SYNOPSIS DESCRIPTION EXAMPLES NOTES FILES "SEE ALSO"; do
      grep -q "^$s" <<<"$out" || fail "$m has no $s section"
    done
  done
fi

# The installed programs find libvublk where it is installed, with no
# ldconfig and no LD_LIBRARY_PATH (a runpath relative to the program, so
# this DESTDIR tree works as the real one would), unless that is under
# /usr, which the linker searches anyway.
if [[ $prefix != /usr && $libdir != /* ]]; then
  for b in vublk vublk-fuse; do
    runpath=$(readelf -d "$P/bin/$b" | sed -n 's/.*R\(UN\)\{0,1\}PATH.*\[\(.*\)\]/\2/p')
    [[ $runpath == *'$ORIGIN'* ]] \
      || fail "installed $b has no runpath relative to itself ('$runpath'): it would need ldconfig"
    found=$(env -u LD_LIBRARY_PATH ldd "$P/bin/$b" | awk '/libvublk/ {print $3}')
    [[ $(realpath -m "$found") == $(realpath -m "$P/$libdir/libvublk.so.1") ]] \
      || fail "installed $b loads libvublk from '$found', not $P/$libdir"
  done
  env -u LD_LIBRARY_PATH "$P/bin/vublk" --version | grep -q "^libvublk " || fail "vublk --version"
  env -u LD_LIBRARY_PATH "$P/bin/vublk-fuse" --version | grep -q "^vublk-fuse " \
    || fail "vublk-fuse --version"
else
  LD_LIBRARY_PATH=$P/$libdir "$P/bin/vublk" --version | grep -q "^libvublk " || fail "vublk --version"
  LD_LIBRARY_PATH=$P/$libdir "$P/bin/vublk-fuse" --version | grep -q "^vublk-fuse " \
    || fail "vublk-fuse --version"
fi

# A program built against pkg-config vublk reads a real device.
cat >"$T/tiny.c" <<'C'
#include <stdio.h>
#include <vublk.h>
int
main (int argc, char **argv)
{
  struct vublk *dev;
  char buf[512];

  if (argc != 2 || !(dev = vublk_open (argv[1], NULL))) {
    fprintf (stderr, "tiny: %s\n", vublk_get_error ());
    return 1;
  }
  if (vublk_pread (dev, buf, sizeof buf, 512) != (ssize_t) sizeof buf) {
    fprintf (stderr, "tiny: %s\n", vublk_get_error ());
    return 1;
  }
  printf ("%s %llu %02x\n", vublk_version (),
          (unsigned long long) vublk_get_size (dev), (unsigned char) buf[0]);
  vublk_close (dev);
  return 0;
}
C
export PKG_CONFIG_PATH=$P/$libdir/pkgconfig PKG_CONFIG_SYSROOT_DIR=$R
cflags=$(pkg-config --cflags vublk) libs=$(pkg-config --libs vublk)
san=()
libsyms=$(nm -D "$P/$libdir/libvublk.so.1")
[[ $libsyms == *__asan_init* ]] && san=(-fsanitize=address,undefined)
[[ $libsyms == *__tsan_init* ]] && san=(-fsanitize=thread)
cc "${san[@]}" -Wall -Werror $cflags -o "$T/tiny" "$T/tiny.c" $libs || fail "building against pkg-config vublk"
make_random_image "$T/disk.img" 1M
start_qsd "$T/disk.img" "$T/v.sock"
want=$(od -An -tx1 -j512 -N1 "$T/disk.img" | tr -d ' ')
out=$(LD_LIBRARY_PATH=$P/$libdir "$T/tiny" "$T/v.sock") || fail "tiny: $out"
[[ $out == "$(pkg-config --modversion vublk) 1048576 $want" ]] || fail "tiny printed '$out'"

# nbdkit loads the installed plugin.
if command -v nbdkit >/dev/null && ! plugin_is_instrumented; then
  nbdkit "$R$plugindir/nbdkit-vhostuser-plugin.so" --dump-plugin | grep -q '^name=vhostuser' \
    || fail "nbdkit cannot load the installed plugin"
fi
echo PASS
