// Translates the C API in include/CGloo.h into Gloo calls; catches every exception.
#include "CGloo.h"

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/allreduce_halving_doubling.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/broadcast_one_to_all.h>
#include <gloo/gather.h>
#include <gloo/math.h>
#include <gloo/reduce.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/rendezvous/store.h>
#include <gloo/scatter.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>

struct tg_gloo_context {
    std::shared_ptr<gloo::rendezvous::Context> context;
};

namespace {

void fail(char *err, size_t errlen, const char *message) {
    if (err && errlen > 0) {
        std::strncpy(err, message, errlen - 1);
        err[errlen - 1] = 0;
    }
}

template <typename F> int guarded(char *err, size_t errlen, F body) {
    try {
        body();
        return 0;
    } catch (const std::exception &e) {
        fail(err, errlen, e.what());
    } catch (...) {
        fail(err, errlen, "unknown C++ exception in Gloo");
    }
    return 1;
}

class CallbackStore : public gloo::rendezvous::Store {
  public:
    CallbackStore(tg_gloo_store s, std::chrono::milliseconds timeout) : s_(s), timeout_(timeout) {}
    void set(const std::string &key, const std::vector<char> &data) override {
        char err[1024] = {0};
        if (s_.set(s_.ctx, key.c_str(), data.data(), data.size(), err, sizeof err) != 0) throw std::runtime_error(err);
    }
    std::vector<char> get(const std::string &key) override {
        char err[1024] = {0};
        void *data = nullptr;
        size_t len = 0;
        if (s_.get(s_.ctx, key.c_str(), &data, &len, err, sizeof err) != 0) throw std::runtime_error(err);
        std::vector<char> out(static_cast<char *>(data), static_cast<char *>(data) + len);
        std::free(data);
        return out;
    }
    void wait(const std::vector<std::string> &keys) override { wait(keys, timeout_); }
    void wait(const std::vector<std::string> &keys, const std::chrono::milliseconds &timeout) override {
        char err[1024] = {0};
        std::vector<const char *> ptrs;
        for (auto &k : keys) ptrs.push_back(k.c_str());
        if (s_.wait(s_.ctx, ptrs.data(), ptrs.size(), timeout.count(), err, sizeof err) != 0) throw std::runtime_error(err);
    }

  private:
    tg_gloo_store s_;
    std::chrono::milliseconds timeout_;
};

using ReduceFn = void (*)(void *, const void *, const void *, size_t);

template <typename T> ReduceFn reduceFunction(int op) {
    switch (op) {
    case TG_OP_SUM: return static_cast<ReduceFn>(&gloo::sum<T>);
    case TG_OP_PRODUCT: return static_cast<ReduceFn>(&gloo::product<T>);
    case TG_OP_MIN: return static_cast<ReduceFn>(&gloo::min<T>);
    case TG_OP_MAX: return static_cast<ReduceFn>(&gloo::max<T>);
    }
    throw std::invalid_argument("unknown reduce op");
}

std::chrono::milliseconds ms(int64_t timeout_ms) { return std::chrono::milliseconds(timeout_ms); }

template <typename T>
void allreduceTyped(tg_gloo_context *ctx, void *buf, size_t count, int op, int64_t timeout_ms) {
    gloo::AllreduceOptions opts(ctx->context);
    opts.setOutput(static_cast<T *>(buf), count);
    opts.setReduceFunction(reduceFunction<T>(op));
    opts.setTimeout(ms(timeout_ms));
    gloo::allreduce(opts);
}

template <typename T> const gloo::ReductionFunction<T> *reductionFunction(int op) {
    switch (op) {
    case TG_OP_SUM: return gloo::ReductionFunction<T>::sum;
    case TG_OP_PRODUCT: return gloo::ReductionFunction<T>::product;
    case TG_OP_MIN: return gloo::ReductionFunction<T>::min;
    case TG_OP_MAX: return gloo::ReductionFunction<T>::max;
    }
    throw std::invalid_argument("unknown reduce op");
}

template <typename T> void allreduceSyncTyped(tg_gloo_context *ctx, void *buf, size_t count, int op) {
    gloo::AllreduceHalvingDoubling<T> algorithm(ctx->context, {static_cast<T *>(buf)}, static_cast<int>(count),
                                                reductionFunction<T>(op));
    algorithm.run();
}

template <typename T>
void reduceTyped(tg_gloo_context *ctx, void *buf, size_t count, int op, int root, int64_t timeout_ms) {
    gloo::ReduceOptions opts(ctx->context);
    opts.setOutput(static_cast<T *>(buf), count);
    opts.setRoot(root);
    opts.setReduceFunction(reduceFunction<T>(op));
    opts.setTimeout(ms(timeout_ms));
    gloo::reduce(opts);
}

/// One TCP device per (interface, hostname) for the whole process, shared by every context
/// (as PyTorch's gloo backend shares one device among a group's contexts): each device runs an
/// event-loop thread that wakes every 10 ms, and on a machine whose cores all train, every
/// wake-up preempts a rank. Never destroyed: contexts may outlive any owner we could pick.
std::shared_ptr<gloo::transport::Device> sharedDevice(const char *iface, const char *hostname) {
    static std::mutex mutex;
    static auto *devices = new std::map<std::string, std::shared_ptr<gloo::transport::Device>>();
    gloo::transport::tcp::attr attr;
    std::string key;
    if (iface && iface[0]) { attr.iface = iface; key = std::string("iface:") + iface; }
    else if (hostname && hostname[0]) { attr.hostname = hostname; key = std::string("host:") + hostname; }
    std::lock_guard<std::mutex> lock(mutex);
    auto &device = (*devices)[key];
    if (!device) device = gloo::transport::tcp::CreateDevice(attr);
    return device;
}

} // namespace

extern "C" {

void tg_ignore_sigpipe(void) { std::signal(SIGPIPE, SIG_IGN); }

int tg_gloo_create(const tg_gloo_store *store, const char *prefix, int rank, int size,
                   int64_t timeout_ms, const char *iface, const char *hostname, int mode,
                   tg_gloo_context **out, char *err, size_t errlen) {
    *out = nullptr;
    return guarded(err, errlen, [&] {
        auto device = sharedDevice(iface, hostname);
        auto context = std::make_shared<gloo::rendezvous::Context>(rank, size);
        context->setTimeout(ms(timeout_ms));
        CallbackStore callbackStore(*store, ms(timeout_ms));
        gloo::rendezvous::PrefixStore prefixStore(prefix, callbackStore);
        context->connectFullMesh(prefixStore, device);
        if (mode != TG_MODE_ASYNC) {
            for (int i = 0; i < size; i++) {
                if (i != rank) context->getPair(i)->setSync(true, false);
            }
        }
        *out = new tg_gloo_context{context};
    });
}

void tg_gloo_destroy(tg_gloo_context *ctx) {
    try {
        delete ctx;
    } catch (...) {
    }
}

int tg_gloo_allreduce(tg_gloo_context *ctx, void *buf, size_t count, int dtype, int op,
                      int64_t timeout_ms, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        switch (dtype) {
        case TG_DTYPE_F32: allreduceTyped<float>(ctx, buf, count, op, timeout_ms); break;
        case TG_DTYPE_F64: allreduceTyped<double>(ctx, buf, count, op, timeout_ms); break;
        case TG_DTYPE_I64: allreduceTyped<int64_t>(ctx, buf, count, op, timeout_ms); break;
        default: throw std::invalid_argument("unsupported dtype");
        }
    });
}

int tg_gloo_set_busy_poll(tg_gloo_context *ctx, int busy_poll, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        for (int i = 0; i < ctx->context->size; i++) {
            if (i != ctx->context->rank) ctx->context->getPair(i)->setSync(true, busy_poll != 0);
        }
    });
}

int tg_gloo_allreduce_sync(tg_gloo_context *ctx, void *buf, size_t count, int dtype, int op,
                           char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        switch (dtype) {
        case TG_DTYPE_F32: allreduceSyncTyped<float>(ctx, buf, count, op); break;
        case TG_DTYPE_F64: allreduceSyncTyped<double>(ctx, buf, count, op); break;
        case TG_DTYPE_I64: allreduceSyncTyped<int64_t>(ctx, buf, count, op); break;
        default: throw std::invalid_argument("unsupported dtype");
        }
    });
}

int tg_gloo_broadcast_sync(tg_gloo_context *ctx, void *buf, size_t bytes, int root, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        gloo::BroadcastOneToAll<uint8_t> algorithm(ctx->context, {static_cast<uint8_t *>(buf)}, bytes, root);
        algorithm.run();
    });
}

int tg_gloo_reduce(tg_gloo_context *ctx, void *buf, size_t count, int dtype, int op, int root,
                   int64_t timeout_ms, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        switch (dtype) {
        case TG_DTYPE_F32: reduceTyped<float>(ctx, buf, count, op, root, timeout_ms); break;
        case TG_DTYPE_F64: reduceTyped<double>(ctx, buf, count, op, root, timeout_ms); break;
        case TG_DTYPE_I64: reduceTyped<int64_t>(ctx, buf, count, op, root, timeout_ms); break;
        default: throw std::invalid_argument("unsupported dtype");
        }
    });
}

int tg_gloo_broadcast(tg_gloo_context *ctx, void *buf, size_t bytes, int root,
                      int64_t timeout_ms, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        gloo::BroadcastOptions opts(ctx->context);
        opts.setOutput(static_cast<uint8_t *>(buf), bytes);
        opts.setRoot(root);
        opts.setTimeout(ms(timeout_ms));
        gloo::broadcast(opts);
    });
}

int tg_gloo_allgather(tg_gloo_context *ctx, const void *in, void *out, size_t bytes,
                      int64_t timeout_ms, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        gloo::AllgatherOptions opts(ctx->context);
        opts.setInput(const_cast<uint8_t *>(static_cast<const uint8_t *>(in)), bytes);
        opts.setOutput(static_cast<uint8_t *>(out), bytes * ctx->context->size);
        opts.setTimeout(ms(timeout_ms));
        gloo::allgather(opts);
    });
}

int tg_gloo_gather(tg_gloo_context *ctx, const void *in, void *out, size_t bytes, int root,
                   int64_t timeout_ms, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        gloo::GatherOptions opts(ctx->context);
        opts.setInput(const_cast<uint8_t *>(static_cast<const uint8_t *>(in)), bytes);
        if (ctx->context->rank == root) opts.setOutput(static_cast<uint8_t *>(out), bytes * ctx->context->size);
        opts.setRoot(root);
        opts.setTimeout(ms(timeout_ms));
        gloo::gather(opts);
    });
}

int tg_gloo_scatter(tg_gloo_context *ctx, void *const *inputs, void *out, size_t bytes, int root,
                    int64_t timeout_ms, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        gloo::ScatterOptions opts(ctx->context);
        if (ctx->context->rank == root) {
            std::vector<uint8_t *> ptrs;
            for (int i = 0; i < ctx->context->size; i++) ptrs.push_back(static_cast<uint8_t *>(inputs[i]));
            opts.setInputs(ptrs, bytes);
        }
        opts.setOutput(static_cast<uint8_t *>(out), bytes);
        opts.setRoot(root);
        opts.setTimeout(ms(timeout_ms));
        gloo::scatter(opts);
    });
}

int tg_gloo_barrier(tg_gloo_context *ctx, int64_t timeout_ms, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        gloo::BarrierOptions opts(ctx->context);
        opts.setTimeout(ms(timeout_ms));
        gloo::barrier(opts);
    });
}

int tg_gloo_send(tg_gloo_context *ctx, const void *buf, size_t bytes, int dst, uint32_t tag,
                 int64_t timeout_ms, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        auto ubuf = ctx->context->createUnboundBuffer(const_cast<void *>(buf), bytes);
        ubuf->send(dst, tag);
        if (!ubuf->waitSend(ms(timeout_ms))) throw std::runtime_error("send was aborted");
    });
}

int tg_gloo_recv(tg_gloo_context *ctx, void *buf, size_t bytes, int src, uint32_t tag,
                 int64_t timeout_ms, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        auto ubuf = ctx->context->createUnboundBuffer(buf, bytes);
        ubuf->recv(src, tag);
        if (!ubuf->waitRecv(ms(timeout_ms))) throw std::runtime_error("recv was aborted");
    });
}

} // extern "C"
