#!/usr/bin/env bash
# The ABI can grow: a program built against each released vublk.h
# (tests/abi/VERSION, frozen) runs with today's libvublk.so and gets the
# right answers; every exported symbol carries a version node, and the
# library exports nothing else.
. "$(dirname "$0")/lib.sh"
requires cc nm objdump qemu-storage-daemon
SRC=$(cd "$(dirname "$0")/../abi" && pwd)
LIB=$VUBLK_BUILD/core
[[ -e $LIB/libvublk.so ]] || fail "no libvublk.so in $LIB"

syms=$(objdump -T "$LIB/libvublk.so" | awk '$2 == "g" && $4 == ".text" {print $6, $7}')
[[ -n $syms ]] || fail "no exported functions found"
while read -r node name; do
  [[ $node == LIBVUBLK_* ]] || fail "$name is exported without a version node ($node)"
  [[ $name == vublk_* ]] || fail "$name is exported and not vublk_*"
done <<<"$syms"
echo "ok: $(wc -l <<<"$syms") functions, each in a LIBVUBLK_ node"

san=()
libsyms=$(nm -D "$LIB/libvublk.so")
[[ $libsyms == *__asan_init* ]] && san=(-fsanitize=address,undefined)
[[ $libsyms == *__tsan_init* ]] && san=(-fsanitize=thread)

make_random_image "$T/disk.img" 4M
start_qsd "$T/disk.img" "$T/v.sock"
for dir in "$SRC"/*/; do
  v=$(basename "$dir")
  cc "${san[@]}" -Wall -Werror -I "$dir" -o "$T/client-$v" "$SRC/abi_client.c" \
    -L "$LIB" -lvublk -Wl,-rpath,"$LIB" || fail "building against the $v header"
  out=$("$T/client-$v" "$T/v.sock") || fail "the $v client: $out"
  echo "ok: built against $v: $out"
done
