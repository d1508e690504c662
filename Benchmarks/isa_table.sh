#!/usr/bin/env bash
# The `tandem bench ops` table against PyTorch at two instruction-set levels in one run: the
# CPU's own, and AVX2 (oneDNN ONEDNN_MAX_CPU_ISA=AVX2, OpenBLAS OPENBLAS_CORETYPE=Haswell;
# PyTorch ATEN_CPU_CAPABILITY=avx2, MKL_ENABLE_INSTRUCTIONS=AVX2 and the same oneDNN limit),
# which is what an AVX2-only CPU (Zen 3) runs. On an AVX2-only CPU the two tables agree.
# Usage (after `swift build -c release`):
#   bash Benchmarks/isa_table.sh PYTHON_WITH_TORCH [extra bench ops flags, e.g. --filter conv]
set -euo pipefail
python=${1:?python with torch}; shift
out=$(mktemp -d)
lscpu | grep -E 'Model name|Flags' | sed 's/Flags:.*\(avx512f\|avx2\).*/&/' | cut -c1-120
for level in native avx2; do
  if [ "$level" = avx2 ]; then
    env=(ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2)
  else
    env=()
  fi
  env "${env[@]}" .build/release/tandem bench ops --json "$@" > "$out/tandem-$level.jsonl"
  env "${env[@]}" "$python" Benchmarks/pytorch/ops.py "$@" > "$out/torch-$level.jsonl"
  echo "## $level"
  python3 Benchmarks/compare.py "$out/tandem-$level.jsonl" "$out/torch-$level.jsonl"
done
