// CGloo: a minimal C API over Gloo (C++), for Swift. Every function catches every C++
// exception and reports it as a non-zero return code plus a message in `err`.
// No logic lives here beyond translating calls.
#ifndef TANDEM_CGLOO_H
#define TANDEM_CGLOO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Opaque Gloo context (one per process group).
typedef struct tg_gloo_context tg_gloo_context;

/// Key-value store callbacks used for Gloo's rendezvous. Each returns 0 on success or
/// writes a message into `err` (capacity `errlen`) and returns non-zero.
typedef struct tg_gloo_store {
    void *ctx;
    int (*set)(void *ctx, const char *key, const void *data, size_t len, char *err, size_t errlen);
    /// `*data` must be allocated with malloc; the shim frees it.
    int (*get)(void *ctx, const char *key, void **data, size_t *len, char *err, size_t errlen);
    int (*wait)(void *ctx, const char *const *keys, size_t nkeys, int64_t timeout_ms, char *err, size_t errlen);
} tg_gloo_store;

enum { TG_DTYPE_F32 = 0, TG_DTYPE_F64 = 1, TG_DTYPE_I64 = 2 };
enum { TG_OP_SUM = 0, TG_OP_PRODUCT = 1, TG_OP_MIN = 2, TG_OP_MAX = 3 };

/// How a context's connections move data. ASYNC: Gloo's event-loop thread reads the sockets
/// (every operation). SYNC: the calling thread reads them itself, blocking (only the `_sync`
/// operations below; `tg_gloo_set_busy_poll` makes it spin on non-blocking reads instead).
enum { TG_MODE_ASYNC = 0, TG_MODE_SYNC = 1 };

/// Creates a context: a TCP device bound to `iface` (if non-empty) or `hostname`, then a
/// full-mesh rendezvous through `store` (all keys under `prefix`), in the given `mode`.
int tg_gloo_create(const tg_gloo_store *store, const char *prefix, int rank, int size,
                   int64_t timeout_ms, const char *iface, const char *hostname, int mode,
                   tg_gloo_context **out, char *err, size_t errlen);
void tg_gloo_destroy(tg_gloo_context *ctx);

int tg_gloo_allreduce(tg_gloo_context *ctx, void *buf, size_t count, int dtype, int op,
                      int64_t timeout_ms, char *err, size_t errlen);
/// On a SYNC context only: all-reduce by recursive halving and doubling, and broadcast by
/// direct sends, in the calling thread (Gloo's original algorithms). Both ranks send before
/// they receive, so messages must fit the sockets' buffers; the timeout is the context's.
/// On a SYNC context: switches between blocking and spinning reads (no call may be running).
int tg_gloo_set_busy_poll(tg_gloo_context *ctx, int busy_poll, char *err, size_t errlen);
int tg_gloo_allreduce_sync(tg_gloo_context *ctx, void *buf, size_t count, int dtype, int op,
                           char *err, size_t errlen);
int tg_gloo_broadcast_sync(tg_gloo_context *ctx, void *buf, size_t bytes, int root, char *err, size_t errlen);
int tg_gloo_reduce(tg_gloo_context *ctx, void *buf, size_t count, int dtype, int op, int root,
                   int64_t timeout_ms, char *err, size_t errlen);
int tg_gloo_broadcast(tg_gloo_context *ctx, void *buf, size_t bytes, int root,
                      int64_t timeout_ms, char *err, size_t errlen);
int tg_gloo_allgather(tg_gloo_context *ctx, const void *in, void *out, size_t bytes,
                      int64_t timeout_ms, char *err, size_t errlen);
int tg_gloo_gather(tg_gloo_context *ctx, const void *in, void *out, size_t bytes, int root,
                   int64_t timeout_ms, char *err, size_t errlen);
int tg_gloo_scatter(tg_gloo_context *ctx, void *const *inputs, void *out, size_t bytes, int root,
                    int64_t timeout_ms, char *err, size_t errlen);
int tg_gloo_barrier(tg_gloo_context *ctx, int64_t timeout_ms, char *err, size_t errlen);
int tg_gloo_send(tg_gloo_context *ctx, const void *buf, size_t bytes, int dst, uint32_t tag,
                 int64_t timeout_ms, char *err, size_t errlen);
int tg_gloo_recv(tg_gloo_context *ctx, void *buf, size_t bytes, int src, uint32_t tag,
                 int64_t timeout_ms, char *err, size_t errlen);

/// Ignores SIGPIPE for the whole process (a dead peer must produce an error, not a signal).
void tg_ignore_sigpipe(void);

#ifdef __cplusplus
}
#endif
#endif
