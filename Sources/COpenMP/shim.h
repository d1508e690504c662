// GNU OpenMP (libgomp), the runtime Debian's oneDNN threads with. Tandem runs its own
// intra-op loops on the same thread team, so one set of threads serves every kernel, as in
// PyTorch. GOMP_parallel is the entry point GCC emits for `#pragma omp parallel` (not part of
// the OpenMP API, but libgomp's stable ABI since GCC 4.9, symbol version GOMP_4.0).
void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);
void omp_set_num_threads(int num_threads);
int omp_in_parallel(void);
