// Raw Gloo allreduce (sum, float32) between 2 processes on 127.0.0.1, for comparison with
// `tandem dist-selftest --bench`. Build: clang++ -O2 -std=c++17 raw_allreduce.cpp -lgloo -lpthread
// Run: ./a.out 0 /tmp/store-dir & ./a.out 1 /tmp/store-dir
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <gloo/allreduce.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/transport/tcp/device.h>

int main(int argc, char **argv) {
    int rank = std::atoi(argv[1]);
    gloo::rendezvous::FileStore store(argv[2]);
    gloo::transport::tcp::attr attr;
    attr.hostname = "127.0.0.1";
    auto dev = gloo::transport::tcp::CreateDevice(attr);
    auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, 2);
    ctx->connectFullMesh(store, dev);
    for (size_t bytes : {size_t(1024), size_t(1) << 20, size_t(25) << 20, size_t(100) << 20}) {
        std::vector<float> buf(bytes / 4, 1.0f);
        int reps = bytes >= (25u << 20) ? 10 : 50;
        std::vector<double> times;
        for (int i = 0; i < reps + 3; i++) {
            auto start = std::chrono::steady_clock::now();
            gloo::AllreduceOptions opts(ctx);
            opts.setOutput(buf.data(), buf.size());
            opts.setReduceFunction(static_cast<void (*)(void *, const void *, const void *, size_t)>(&gloo::sum<float>));
            gloo::allreduce(opts);
            double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
            if (i >= 3) times.push_back(ms);
        }
        std::sort(times.begin(), times.end());
        if (rank == 0) std::printf("{\"op\":\"allreduce\",\"backend\":\"raw-gloo\",\"bytes\":%zu,\"median_ms\":%f,\"min_ms\":%f}\n", bytes, times[times.size() / 2], times[0]);
    }
}
