#!/usr/bin/env bash
# Runs the numeric and golden test suites at every instruction-set level this CPU supports,
# selecting oneDNN's kernels with ONEDNN_MAX_CPU_ISA and OpenBLAS's with OPENBLAS_CORETYPE, so
# that an AVX-512 machine also checks the AVX2 and SSE4.1 paths an AVX2-only machine (or an
# older one) would run.
#
#   bash scripts/isa_matrix.sh            # every level the CPU has
#   bash scripts/isa_matrix.sh AVX2       # the named levels only (AVX512_CORE, AVX2, SSE41)
#
# Prints one line per level and exits non-zero when any level fails; each level's output is
# in .build/isa-matrix-LEVEL.log.
set -uo pipefail
cd "$(dirname "$0")/.."

flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { [[ " $flags " == *" $1 "* ]]; }

# Level name, the OpenBLAS core type with the same vector width, the CPU flags it needs.
levels=()
has avx512f && has avx512bw && has avx512vl && has avx512dq && levels+=("AVX512_CORE:SkylakeX")
has avx2 && has fma && levels+=("AVX2:Haswell")
has sse4_1 && levels+=("SSE41:Nehalem")
if [ $# -gt 0 ]; then
  wanted=()
  for name in "$@"; do
    match=""
    for level in "${levels[@]}"; do [ "${level%%:*}" = "$name" ] && match=$level; done
    [ -n "$match" ] || { echo "isa_matrix: this CPU has no $name (it has: ${levels[*]%%:*})" >&2; exit 2; }
    wanted+=("$match")
  done
  levels=("${wanted[@]}")
fi

# The suites whose results depend on the kernels: tensor core, layers, optimizers, models
# (golden ConvNet, Mamba, KAN, ...) and the DDP parity tests.
suites='TandemCoreTests|TandemNNTests|TandemOptimTests|TandemModelsTests|TandemParallelTests'

swift build --build-tests >/dev/null || { echo "isa_matrix: build failed" >&2; exit 1; }
status=0
for level in "${levels[@]}"; do
  isa=${level%%:*} core=${level#*:}
  log=.build/isa-matrix-$isa.log
  start=$(date +%s)
  ONEDNN_MAX_CPU_ISA=$isa OPENBLAS_CORETYPE=$core swift test --skip-build --filter "$suites" >"$log" 2>&1
  rc=$?
  summary=$(grep -E 'Test run with [0-9]+ tests' "$log" | tail -1 | sed 's/^[^T]*//')
  echo "$isa (OPENBLAS_CORETYPE=$core): ${summary:-no summary, see $log} [$(( $(date +%s) - start )) s]"
  [ $rc -eq 0 ] || { status=1; grep -E '✘ Test .*(recorded an issue|failed)' "$log" | head -20; }
done
exit $status
