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
    @Option(help: "Also write this PNG file (rendered by librsvg's rsvg-convert, which scripts/setup.sh installs).")
    var png: String?

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
        if let png {
            try Self.renderPNG(svg: out, to: png)
            print("wrote \(png)")
        }
    }

    /// PNG through librsvg (Debian's librsvg2-bin): the SVG renderer GNOME and most Linux tools
    /// use, so the picture is the one a browser shows, without a rasteriser and fonts in Tandem.
    static func renderPNG(svg: String, to png: String) throws {
        let tool = ["/usr/bin/rsvg-convert", "/usr/local/bin/rsvg-convert"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let tool else {
            throw ValidationError("--png needs rsvg-convert: install Debian's librsvg2-bin (bash scripts/setup.sh does)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = ["--background-color", "white", "-o", png, svg]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw ValidationError("rsvg-convert could not render \(svg) (exit \(p.terminationStatus))") }
    }
}
