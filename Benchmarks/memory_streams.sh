#!/bin/bash
# Do two busy cores slow each other's memory traffic? Runs the loop y = 0.5·y + x over MB
# megabytes per array on core 0 alone, then on cores 0 and 1 at once, for SECONDS each, and
# prints core 0's GB/s every 0.2 s (3 bytes moved per float: read x, read and write y).
# 64 MB per array leaves the L3 (32 MB on the project's VM); 8 MB stays in it. Needs a C compiler.
# Usage: bash Benchmarks/memory_streams.sh [MB] [SECONDS]
set -euo pipefail
mb=${1:-64}; seconds=${2:-4}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/stream.c" <<'C'
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
    int cpu = atoi(argv[1]); double seconds = atof(argv[2]); size_t mb = (size_t)atol(argv[3]);
    cpu_set_t set; CPU_ZERO(&set); CPU_SET(cpu, &set); sched_setaffinity(0, sizeof set, &set);
    size_t n = mb * 1024 * 1024 / 4;
    float *x = aligned_alloc(64, n * 4), *y = aligned_alloc(64, n * 4);
    for (size_t i = 0; i < n; i++) { x[i] = (float)i; y[i] = 0; }
    for (double end = now() + seconds; now() < end;) {
        double start = now(); long passes = 0;
        while (now() < start + 0.2) { for (size_t i = 0; i < n; i++) y[i] = y[i] * 0.5f + x[i]; passes++; }
        printf("%.0f ", passes * mb * 3 / (now() - start) / 1024); fflush(stdout);
    }
    printf("\n");
    return y[n / 2] < 0;
}
C
cc -O3 -march=native -o "$dir/stream" "$dir/stream.c"
echo "core 0 alone, $mb MB, GB/s:"; "$dir/stream" 0 "$seconds" "$mb"
echo "core 0 while core 1 runs the same loop, GB/s:"
"$dir/stream" 1 "$seconds" "$mb" >/dev/null &
"$dir/stream" 0 "$seconds" "$mb"
wait
