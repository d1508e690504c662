import ArgumentParser
import Foundation
import TandemCore
import TandemData
import TandemModels
import TandemNN
import TandemOptim
import TandemTrain

/// `tandem bench lm`: the seed's comparison of a Transformer and Mamba-2 of equal parameter count
/// on the same byte-level corpus at several context lengths. Each (model, context) trains in its
/// own process (so peak resident memory is its own) for the same wall-clock time, with the same
/// tokens per step, then scores the same held-out bytes. Prints a table, one JSON line per run,
/// and writes `lm.svg` (tokens/s, peak memory and validation bits per byte against context).
struct BenchLM: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "lm", abstract: "Transformer against Mamba-2 at equal parameters, by context length.")

    @Option(help: "Comma-separated context lengths.") var contexts: String = "256,1024,4096,16384"
    @Option(help: "Training seconds per run.") var seconds: Double = 60
    @Option(help: "Residual width of both models.") var width: Int = 128
    @Option(help: "Transformer layers (heads of 64 channels; the Mamba-2 gets the layers that match its parameter count).") var layers: Int = 4
    @Option(help: "Tokens per optimizer step (windows per step = this ÷ context, at least 1).") var tokensPerStep: Int = 4096
    @Option(help: "Held-out bytes scored after training.") var evalTokens: Int = 16384
    @Option(help: "Text corpus: a UTF-8 file or a folder of fortune files.") var dataFile: String = TrainingRecipes.defaultTextCorpus
    @Option(help: "Folder for lm.svg and lm.jsonl.") var out: String = "runs/bench-lm"
    @Option(help: "Intra-op threads.") var threads: Int = 2
    @Option(help: .hidden) var runOne: String?

    func run() throws {
        Tandem.setNumThreads(threads)
        if let model = runOne {
            try trainOne(model: model, context: contexts.split(separator: ",").compactMap { Int($0) }.first ?? 256)
            return
        }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        var rows: [[String: Any]] = []
        for context in contexts.split(separator: ",").compactMap({ Int($0) }) {
            for model in ["transformer", "mamba2"] {
                let row = try child(model: model, context: context)
                rows.append(row)
                let data = try JSONSerialization.data(withJSONObject: row, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                fflush(nil)
            }
        }
        let lines = rows.map { row in try? JSONSerialization.data(withJSONObject: row, options: [.sortedKeys]) }
            .compactMap { $0.map { String(decoding: $0, as: UTF8.self) } }.joined(separator: "\n")
        try (lines + "\n").write(toFile: out + "/lm.jsonl", atomically: true, encoding: .utf8)
        printTable(rows)
        try plot(rows)
    }

    /// Runs one (model, context) in a fresh process and returns its JSON record.
    private func child(model: String, context: Int) throws -> [String: Any] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
        process.arguments = ["lm", "--run-one", model, "--contexts", "\(context)", "--seconds", "\(seconds)", "--width", "\(width)",
                             "--layers", "\(layers)", "--tokens-per-step", "\(tokensPerStep)", "--eval-tokens", "\(evalTokens)",
                             "--data-file", dataFile, "--threads", "\(threads)"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
              let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last,
              let row = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw ValidationError("the \(model) run at context \(context) failed (exit \(process.terminationStatus))")
        }
        return row
    }

    /// The two models: a LLaMA decoder (`layers` layers, heads of 64 channels, SwiGLU 8/3·width) and
    /// the Mamba-2 LM (dState 64, headdim 32, expand 2) whose layer count gives the closest parameter count.
    static func models(width: Int, layers: Int, context: Int) -> (transformer: LlamaForCausalLM, mamba: Mamba2LM) {
        var llama = LlamaConfig()
        (llama.hiddenSize, llama.numHiddenLayers, llama.maxPositionEmbeddings) = (width, layers, context)
        llama.numAttentionHeads = Swift.max(1, width / 64)
        llama.numKeyValueHeads = llama.numAttentionHeads
        llama.intermediateSize = (8 * width / 3 + 31) / 32 * 32
        let transformer = LlamaForCausalLM(llama, generator: Generator(seed: 0))
        let target = transformer.parameters().reduce(0) { $0 + $1.value.count }
        var best: Mamba2LM?
        for n in 1...(4 * layers + 4) {
            var config = Mamba2LM.Config()
            (config.dModel, config.nLayers, config.dState, config.headdim) = (width, n, 64, 32)
            let candidate = Mamba2LM(config, generator: Generator(seed: 0))
            let count = candidate.parameters().reduce(0) { $0 + $1.value.count }
            if best == nil || abs(count - target) < abs(best!.parameters().reduce(0) { $0 + $1.value.count } - target) { best = candidate }
        }
        return (transformer, best!)
    }

    /// Trains one model for `seconds` and prints its record.
    private func trainOne(model name: String, context: Int) throws {
        let corpus = try TextDataset.load(path: dataFile)
        let train = try TextDataset(corpus: corpus, context: context, split: .train, path: dataFile)
        let test = try TextDataset(corpus: corpus, context: context, split: .test, path: dataFile)
        let pair = Self.models(width: width, layers: layers, context: context)
        let model: any Module = name == "transformer" ? pair.transformer : pair.mamba
        let parameters = model.parameters().reduce(0) { $0 + $1.value.count }
        let optimizer = try Adam.adamW(model.parameters(), lr: 2e-3, weightDecay: 0.1)
        let batch = Swift.max(1, tokensPerStep / context)
        let g = Generator(seed: 1)
        var steps = 0, tokens = 0, stepSeconds: [Double] = []
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            let indices = (0..<batch).map { _ in Int(g.next() % UInt64(train.count)) }
            let (x, y) = try train.batch(indices, epoch: 0)
            let t0 = Date()
            optimizer.zeroGrad()
            let loss = try Tensor.crossEntropy(model(x).reshape([-1, 256]), target: y.reshape([-1]))
            try loss.backward()
            try ClipGrad.clipGradNorm(model.parameters(), maxNorm: 1)
            try optimizer.step()
            stepSeconds.append(Date().timeIntervalSince(t0))
            steps += 1
            tokens += batch * context
        }
        let trainSeconds = Date().timeIntervalSince(start)
        // Steady-state speed: the median step (the first steps pay for page faults).
        let median = stepSeconds.sorted()[stepSeconds.count / 2]
        model.isTraining = false
        var lossSum = 0.0, count = 0
        let windows = Swift.min(test.count, Swift.max(1, evalTokens / context))
        try Tensor.withNoGrad {
            for i in 0..<windows {
                let (x, y) = try test.batch([i], epoch: 0)
                lossSum += try Tensor.crossEntropy(model(x).reshape([-1, 256]), target: y.reshape([-1]), reduction: .sum).item()
                count += y.count
            }
        }
        let row: [String: Any] = [
            "model": name, "context": context, "parameters": parameters, "steps": steps, "train_tokens": tokens,
            "train_seconds": (trainSeconds * 10).rounded() / 10, "batch": batch,
            "tokens_per_second": (Double(batch * context) / median).rounded(),
            "peak_rss_mib": (Double(ResourceUsage.peakResidentBytes()) / 1_048_576).rounded(),
            "val_bits_per_byte": (lossSum / Double(count) / log(2.0) * 1000).rounded() / 1000, "val_tokens": count, "threads": threads,
        ]
        let data = try JSONSerialization.data(withJSONObject: row, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }

    private func printTable(_ rows: [[String: Any]]) {
        print("\n| context | model | parameters | steps | tokens/s | peak RSS (MiB) | val bits/byte |")
        print("|---|---|---|---|---|---|---|")
        for r in rows {
            print("| \(r["context"]!) | \(r["model"]!) | \(r["parameters"]!) | \(r["steps"]!) | \(r["tokens_per_second"]!) | \(r["peak_rss_mib"]!) | \(r["val_bits_per_byte"]!) |")
        }
    }

    private func plot(_ rows: [[String: Any]]) throws {
        func line(_ model: String, _ key: String) -> Plot.Line {
            Plot.Line(name: model, points: rows.filter { $0["model"] as? String == model }.compactMap { r in
                guard let c = r["context"] as? Int, let v = (r[key] as? NSNumber)?.doubleValue else { return nil }
                return (log2(Double(c)), v)
            })
        }
        let series = [("training tokens/s", "tokens_per_second"), ("peak resident MiB", "peak_rss_mib"),
                      ("validation bits/byte after equal time", "val_bits_per_byte")].map { title, key in
            Plot.Series(title: title, lines: [line("transformer", key), line("mamba2", key)])
        }
        try Plot.writeSVG(series, xLabel: "log2(context length)", to: out + "/lm.svg")
        print("plot: \(out)/lm.svg")
    }
}
