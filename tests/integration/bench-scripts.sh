#!/usr/bin/env bash
# The benchmark scripts still run and still print every row and line the
# README's performance section quotes: bench/compare (with nbdkit's file
# plugin paced to the plugin's rate), bench/core (with the minimal
# client polling both with the backend's signals off and left on),
# bench/regress, bench/depth and bench/copy.  Tiny sizes and runtimes: this checks
# that they work, never how fast anything is; --ramp 0 keeps fio from
# running a second it does not count.
. "$(dirname "$0")/lib.sh"
requires qemu-storage-daemon qemu-img fio nbdkit nbdfuse fusermount3
# nbdkit is not built with sanitizers, so an instrumented plugin cannot
# be loaded: the benchmarks are for the plain build only.
plugin_is_instrumented && { echo "SKIP: plugin built with a sanitizer" >&2; exit 77; }
bench=$(cd "$(dirname "$0")/../../bench" && pwd)

# has FILE PATTERN WHAT: FILE has a line matching the extended regex.
has() {
  grep -Eq -- "$2" "$1" || { cat "$1" >&2; fail "$3: no line matching '$2'"; }
}
num='[0-9]+(\.[0-9]+)?'

# --- --help prints each script's whole header comment ---------------------
for s in compare core regress depth copy; do
  last=$(sed -n '2,/^[^#]/p' "$bench/$s" | grep '^#' | tail -1 | sed 's/^# \{0,1\}//')
  got=$("$bench/$s" --help | tail -1)
  [[ $got == "$last" ]] || fail "bench/$s --help ends with '$got', not with its header's last line '$last'"
done

# --- bench/compare ------------------------------------------------------
VUBLK_BUILD=/nonexistent timeout 360 "$bench/compare" --build "$VUBLK_BUILD" --size 16M --runtime 2 \
  --ramp 0 --reps 1 --out "$T/compare.md" >"$T/compare.out" 2>"$T/compare.err" \
  || { tail -20 "$T/compare.err" >&2; fail "bench/compare failed"; }
for e in plugin qsd-nbd nbdkit-file vublk-fuse qsd-fuse nbdfuse; do
  # Throughput row (6 numbers) and CPU row (two sums and two projections).
  has "$T/compare.md" "^\| $e( \| $num){6} \|$" "compare: $e results"
  has "$T/compare.md" "^\| $e \| $num = $num \+ $num \+ $num \| $num = .* \| ${num}k \((fio|frontend|backend)\) \|" \
    "compare: $e CPU per request"
done
for r in "plugin / qsd-nbd" "vublk-fuse / qsd-fuse" "vublk-fuse / nbdfuse"; do
  has "$T/compare.md" "^\| $r( \| ${num}x){6} \|$" "compare: ratio $r"
done
has "$T/compare.md" "^\| nbdkit-file paced to the plugin's rate \| $num = $num \+ $num \+ 0\.0 \| $num = " \
  "compare: the paced file plugin's CPU"
has "$T/compare.md" "^- nbdkit's CPU per 4k request .* $num us with the plugin; with its file plugin $num us at full speed \(${num}x\).* $num us paced to the plugin's rate \(${num}x\)$" \
  "compare: nbdkit's CPU at full speed and paced"
has "$T/compare.md" "estimated ceiling .* measured ${num}x$" "compare: the QD1 ceiling"
has "$T/compare.md" "^projected = a projection" "compare: the projection's label"
has "$T/compare.md" "^- sleeping on notifications: .* [0-9]+ IOPS.*backend CPU [0-9]+%$" "compare: core alone"
# The paced run really was paced: nbdkit-file at about the plugin's rate.
grep -E "nbdkit-file paced to [0-9]+ IOPS: [0-9]+$" "$T/compare.err" >"$T/paced" \
  || fail "compare: no paced run in its progress lines"
while read -r _ _ w _ _ _ want _ got; do
  ((got <= want + want / 10 + 100)) \
    || fail "compare: $w paced to $want IOPS ran at $got"
done <"$T/paced"
(($(wc -l <"$T/paced") == 2)) || fail "compare: expected 2 paced runs, got $(wc -l <"$T/paced")"

# --- bench/core ---------------------------------------------------------
timeout 120 "$bench/core" --build "$VUBLK_BUILD" --reps 1 --time 1 \
  --out "$T/core.md" >/dev/null 2>"$T/core.err" \
  || { tail -20 "$T/core.err" >&2; fail "bench/core failed"; }
for c in "eventfd, QD32" "poll, QD32" "eventfd, QD1" "poll, QD1"; do
  has "$T/core.md" "^\| $c \| [0-9]+( \(.*\))? \| [0-9]+( \(.*\))? \| $num \| $num \| $num \| [0-9]+% / [0-9]+% \| $num / $num \|$" \
    "core: cell $c"
done
for qd in 32 1; do
  line="^- poll, QD$qd, the minimal client with the backend's signals left on: [0-9]+ .*x its rate with them off; backend write calls per request $num \(off: $num, vublk: $num\), loop turns $num, backend CPU [0-9]+%$"
  has "$T/core.md" "$line" "core: the minimal client polling with signals on at QD$qd"
  # Polling, the backend signals every completion only when asked to:
  # the reference and vublk switch the signals off, --notify leaves them
  # on (counts, not speeds).
  read -r on off ours < <(sed -nE "s/^- poll, QD$qd, .*per request ([0-9.]+) \(off: ([0-9.]+), vublk: ([0-9.]+)\).*/\1 \2 \3/p" "$T/core.md")
  python3 -c "import sys; on, off, ours = map(float, sys.argv[1:]); sys.exit(not (on >= 0.9 and off <= 0.05 and ours <= 0.05))" "$on" "$off" "$ours" \
    || fail "core QD$qd: backend write calls per request $on with signals on, $off off, $ours for vublk: expected about 1 and 0 and 0"
done

# --- bench/regress (the same build on both sides) ------------------------
timeout 120 "$bench/regress" "$VUBLK_BUILD" "$VUBLK_BUILD" --size 16M --runtime 1 \
  --ramp 0 --reps 1 --out "$T/regress.md" >/dev/null 2>"$T/regress.err" \
  || { tail -20 "$T/regress.err" >&2; fail "bench/regress failed"; }
for f in fuse plugin; do
  for w in "1M read MiB/s" "1M write MiB/s" "4k QD1 read IOPS" "convert s"; do
    has "$T/regress.md" "^\| $f \| $w \| $num \| $num \| ${num}x \|$" "regress: $f $w"
  done
done
# --- bench/depth, both paths (with an old build: the same one) -------------
for path in fuse nbd; do
  timeout 120 "$bench/depth" --path $path --build "$VUBLK_BUILD" --old "$VUBLK_BUILD" \
    --depths "1 4" --size 16M --runtime 1 --ramp 0 --reps 1 --out "$T/depth-$path.md" \
    >/dev/null 2>"$T/depth.err" \
    || { tail -20 "$T/depth.err" >&2; fail "bench/depth --path $path failed"; }
  ours=vublk-fuse theirs=qsd-fuse
  [[ $path == nbd ]] && ours=plugin theirs=qsd-nbd
  has "$T/depth-$path.md" "^\| workload \| depth \| $ours IOPS \| old $ours IOPS \| $theirs IOPS \|" \
    "depth: $path names its endpoints"
  for w in "4k random read" "4k random write"; do
    for d in 1 4; do
      has "$T/depth-$path.md" "^\| $w \| $d \| [0-9]+ \| [0-9]+ \| [0-9]+ \| ${num}x \| ${num}x \|$" \
        "depth: $path $w at QD$d"
    done
  done
done
"$bench/depth" --path scsi >/dev/null 2>"$T/depth-bad.err" \
  && fail "depth: accepted --path scsi"
has "$T/depth-bad.err" "--path is fuse or nbd, not 'scsi'" "depth: names a bad path"
"$bench/depth" --depths "1 0" >/dev/null 2>"$T/depth-bad.err" \
  && fail "depth: accepted queue depth 0"
has "$T/depth-bad.err" "--depths takes queue depths 1..1024, not '0'" "depth: names a bad depth"
"$bench/compare" --runtime 1 >/dev/null 2>"$T/compare-bad.err" \
  && fail "compare: accepted --runtime 1, which leaves no time to sample CPU"
has "$T/compare-bad.err" "--runtime takes whole seconds, at least 2, not '1'" "compare: names a bad --runtime"
"$bench/regress" "$VUBLK_BUILD" "$VUBLK_BUILD" --ramp 1s >/dev/null 2>"$T/regress-bad.err" \
  && fail "regress: accepted --ramp 1s"
has "$T/regress-bad.err" "--ramp takes whole seconds, at least 0, not '1s'" "regress: names a bad --ramp"
# --- bench/copy ----------------------------------------------------------
timeout 120 "$bench/copy" --build "$VUBLK_BUILD" --size 16M --reps 1 --out "$T/copy.md" \
  >/dev/null 2>"$T/copy.err" || { tail -20 "$T/copy.err" >&2; fail "bench/copy failed"; }
for src in "random data" "1/16 data, the rest holes"; do
  for tool in vublk-copy nbdcopy-plugin convert-plugin convert-qsd-nbd; do
    has "$T/copy.md" "^\| $src \| $tool \| [0-9]+ \| ${num}x \| $num = $num \+ $num \|$" \
      "copy: $tool with $src"
  done
done
"$bench/copy" --reps 0 >/dev/null 2>"$T/copy-bad.err" && fail "copy: accepted --reps 0"
has "$T/copy-bad.err" "--reps must be a positive integer" "copy: names a bad --reps"
echo "bench scripts: compare, core, regress, depth and copy printed every row"
