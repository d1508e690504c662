// oneDNN's C API (Debian: libdnnl-dev). The Debian build threads with OpenMP and has no
// API of its own for the thread count, so omp_set_num_threads is declared here.
#include <dnnl.h>
void omp_set_num_threads(int num_threads);
int omp_get_max_threads(void);
