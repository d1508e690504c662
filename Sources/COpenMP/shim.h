// GNU OpenMP (libgomp), the runtime Debian's oneDNN threads with. Tandem runs its own
// intra-op loops on the same thread team (GOMP_parallel is the entry point GCC emits for
// `#pragma omp parallel`), so one set of threads serves every kernel, as in PyTorch.
void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);
void omp_set_num_threads(int num_threads);
int omp_get_max_threads(void);
int omp_get_thread_num(void);
int omp_in_parallel(void);
