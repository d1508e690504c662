// oneDNN's C API (Debian: libdnnl-dev). The Debian build threads with OpenMP and has no
// API of its own for the thread count: Tandem sets it through COpenMP.
#include <dnnl.h>
