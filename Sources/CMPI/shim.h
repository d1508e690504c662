// OpenMPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, MPI_IN_PLACE, ...) are macros Swift
// cannot import: these inline functions return them.
#include <mpi.h>

static inline MPI_Comm tg_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm tg_mpi_comm_null(void) { return MPI_COMM_NULL; }
static inline MPI_Datatype tg_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype tg_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype tg_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype tg_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op tg_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op tg_mpi_prod(void) { return MPI_PROD; }
static inline MPI_Op tg_mpi_min(void) { return MPI_MIN; }
static inline MPI_Op tg_mpi_max(void) { return MPI_MAX; }
static inline void *tg_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Errhandler tg_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int tg_mpi_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }
static inline int tg_mpi_undefined(void) { return MPI_UNDEFINED; }
static inline MPI_Status *tg_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
