import ArgumentParser
import Foundation
import TandemTrain

/// `tandem plot RUN…`: training loss, test accuracy and test loss of several runs in one SVG
/// figure, one line per run (e.g. one process against DDP).
struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot", abstract: "Draw the metrics of one or more runs (their --out folders) in one SVG figure.")

    @Argument(help: "Run folders (holding metrics.jsonl) or metrics.jsonl files.") var runs: [String]
    @Option(help: "The SVG file to write.") var out = "runs.svg"

    func validate() throws {
        guard !runs.isEmpty else { throw ValidationError("name at least one run folder, e.g. tandem plot runs/one runs/ddp") }
    }

    func run() throws {
        let loaded = try runs.map { run -> (name: String, records: [[String: Any]]) in
            var isFolder: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: run, isDirectory: &isFolder)
            let path = isFolder.boolValue ? run + "/metrics.jsonl" : run
            guard exists, FileManager.default.fileExists(atPath: path) else {
                throw ValidationError("'\(path)' does not exist; give a folder that `tandem train --out` wrote, or its metrics.jsonl")
            }
            let name = URL(fileURLWithPath: isFolder.boolValue ? run : (run as NSString).deletingLastPathComponent).lastPathComponent
            return (name, try MetricsLog.read(path: path))
        }
        try Plot.writeSVG(Plot.runPanels(loaded), xLabel: "step", to: out)
        print("wrote \(out) (\(loaded.count) run\(loaded.count == 1 ? "" : "s"))")
    }
}
