// Raw Gloo allreduce (sum, float32, in place) between 2 processes on 127.0.0.1, driven from C++,
// for comparison with `tandem bench allreduce --json`. Same protocol: a zero buffer, 3 warm-up
// calls, then 50 timed calls (10 from 25 MB on); rank 0 prints one JSON line per size with the
// same fields. Two ways (third argument):
//   ring (default): `gloo::allreduce`, Gloo's current algorithm, its event-loop thread reading
//                   the sockets (what PyTorch's gloo backend calls);
//   sync:           what Tandem does with the group's default timeout: pairs in synchronous mode
//                   (the calling thread reads, blocking), `AllreduceHalvingDoubling` on pieces
//                   of at most `wmem_max` bytes (net.core.wmem_max, at most 4 MB);
//   sync-spin:      the same with spinning reads (Tandem with TANDEM_GLOO_BUSY_POLL=1).
// Build: g++ -O2 -std=c++17 Benchmarks/gloo/raw_allreduce.cpp -lgloo -lpthread -o /tmp/raw_allreduce
// Run:   rm -rf /tmp/gloo-store && mkdir /tmp/gloo-store &&
//        (/tmp/raw_allreduce 1 /tmp/gloo-store > /dev/null &) && /tmp/raw_allreduce 0 /tmp/gloo-store [ring|sync|sync-spin]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>
#include <gloo/allreduce.h>
#include <gloo/allreduce_halving_doubling.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/transport/tcp/device.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s RANK STORE_DIR\n", argv[0]);
        return 2;
    }
    int rank = std::atoi(argv[1]);
    bool sync = argc > 3 && std::strncmp(argv[3], "sync", 4) == 0;
    bool spin = sync && std::strcmp(argv[3], "sync-spin") == 0;
    size_t piece = 212992;
    std::ifstream("/proc/sys/net/core/wmem_max") >> piece;
    piece = std::min(std::max(piece, size_t(64) << 10), size_t(4) << 20) / sizeof(float);
    gloo::rendezvous::FileStore store(argv[2]);
    gloo::transport::tcp::attr attr;
    attr.hostname = "127.0.0.1";
    auto dev = gloo::transport::tcp::CreateDevice(attr);
    auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, 2);
    ctx->connectFullMesh(store, dev);
    if (sync) ctx->getPair(1 - rank)->setSync(true, spin);
    for (size_t bytes : {size_t(1024), size_t(1) << 20, size_t(25) << 20, size_t(100) << 20}) {
        std::vector<float> buf(bytes / 4, 0.0f);
        int reps = bytes >= (25u << 20) ? 10 : 50;
        std::vector<double> times;
        for (int i = 0; i < reps + 3; i++) {
            auto start = std::chrono::steady_clock::now();
            if (sync) {
                for (size_t start = 0; start < buf.size(); start += piece) {
                    int n = int(std::min(piece, buf.size() - start));
                    gloo::AllreduceHalvingDoubling<float>(ctx, {buf.data() + start}, n).run();
                }
            } else {
                gloo::AllreduceOptions opts(ctx);
                opts.setOutput(buf.data(), buf.size());
                opts.setReduceFunction(static_cast<void (*)(void *, const void *, const void *, size_t)>(&gloo::sum<float>));
                gloo::allreduce(opts);
            }
            double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
            if (i >= 3) times.push_back(ms);
        }
        std::sort(times.begin(), times.end());
        double median = times[times.size() / 2];
        char label[32];
        if (bytes % (1u << 20) == 0) std::snprintf(label, sizeof label, "%zu MB", bytes >> 20);
        else std::snprintf(label, sizeof label, "%zu KB", bytes >> 10);
        if (rank == 0)
            std::printf("{\"op\":\"allreduce\",\"form\":\"inplace\",\"backend\":\"%s\",\"world\":2,\"dtype\":\"float32\","
                        "\"bytes\":%zu,\"size\":\"%s\",\"reps\":%d,\"median_ms\":%.4f,\"min_ms\":%.4f,\"gb_per_s\":%.6f}\n",
                        !sync ? "raw-gloo" : spin ? "raw-gloo-sync-spin" : "raw-gloo-sync", bytes, label, reps, median, times[0], bytes / (median / 1000) / 1e9);
        std::fflush(stdout);
    }
}
