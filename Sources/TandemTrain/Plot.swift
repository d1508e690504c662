import Foundation

/// Line charts as SVG files: one panel per quantity (loss, accuracy, ...), one line per run.
/// Axes have ticks at round values (1, 2 or 5 × 10^k), a loss that spans two decades or more is
/// drawn on a log scale, and the margins leave room for every tick label.
public enum Plot {
    /// One line: a run's name and its (x, y) points.
    public struct Line {
        public var name: String
        public var points: [(Double, Double)]
        public init(name: String, points: [(Double, Double)]) { self.name = name; self.points = points }
    }

    /// One panel: a title, the lines drawn in it, and whether a wide positive range may use a
    /// log scale.
    public struct Series {
        public var title: String
        public var lines: [Line]
        public var logScaleAllowed: Bool
        public init(title: String, lines: [Line], logScaleAllowed: Bool = false) {
            self.title = title; self.lines = lines; self.logScaleAllowed = logScaleAllowed
        }
        /// A panel with a single line.
        public init(title: String, points: [(Double, Double)], logScaleAllowed: Bool = false) {
            self.init(title: title, lines: [Line(name: title, points: points)], logScaleAllowed: logScaleAllowed)
        }
    }

    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]

    /// Renders the panels side by side and writes the SVG atomically to `path`.
    public static func writeSVG(_ series: [Series], xLabel: String, to path: String) throws {
        let svg = render(series, xLabel: xLabel)
        let temporary = path + ".tmp"
        try svg.write(toFile: temporary, atomically: false, encoding: .utf8)
        guard rename(temporary, path) == 0 else { throw TrainError.io("cannot write plot '\(path)'") }
    }

    /// The SVG text of `series`.
    static func render(_ series: [Series], xLabel: String) -> String {
        let panelWidth = 440.0, height = 320.0
        let left = 72.0, right = 16.0, top = 36.0, bottom = 48.0
        var svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(panelWidth) * max(series.count, 1))" height="\(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>

        """
        for (k, s) in series.enumerated() {
            let x0 = Double(k) * panelWidth
            let lines = s.lines.map { line in Line(name: line.name, points: line.points.filter { $0.0.isFinite && $0.1.isFinite }) }
            let all = lines.flatMap(\.points)
            let ys = all.map(\.1)
            let log = s.logScaleAllowed && !ys.isEmpty && ys.allSatisfy { $0 > 0 } && ys.max()! / ys.min()! >= 100
            let xAxis = Axis(values: all.map(\.0), log: false, startAtZero: true)
            let yAxis = Axis(values: ys, log: log, startAtZero: false)
            let plotWidth = panelWidth - left - right, plotHeight = height - top - bottom
            func px(_ x: Double) -> Double { x0 + left + xAxis.fraction(x) * plotWidth }
            func py(_ y: Double) -> Double { top + (1 - yAxis.fraction(y)) * plotHeight }
            svg += "<text x=\"\(x0 + left + plotWidth / 2)\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">"
                + "\(escape(s.title))\(log ? " (log scale)" : "")</text>\n"
            svg += "<rect x=\"\(x0 + left)\" y=\"\(top)\" width=\"\(plotWidth)\" height=\"\(plotHeight)\" fill=\"none\" stroke=\"black\"/>\n"
            for t in yAxis.ticks {
                svg += "<line x1=\"\(x0 + left - 4)\" y1=\"\(py(t))\" x2=\"\(x0 + left + plotWidth)\" y2=\"\(py(t))\" stroke=\"#ddd\"/>\n"
                svg += "<text x=\"\(x0 + left - 6)\" y=\"\(py(t) + 4)\" text-anchor=\"end\">\(format(t))</text>\n"
            }
            for t in xAxis.ticks {
                svg += "<line x1=\"\(px(t))\" y1=\"\(top + plotHeight)\" x2=\"\(px(t))\" y2=\"\(top + plotHeight + 4)\" stroke=\"black\"/>\n"
                svg += "<text x=\"\(px(t))\" y=\"\(top + plotHeight + 17)\" text-anchor=\"middle\">\(format(t))</text>\n"
            }
            svg += "<text x=\"\(x0 + left + plotWidth / 2)\" y=\"\(height - 10)\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
            for (i, line) in lines.enumerated() where !line.points.isEmpty {
                let color = colors[i % colors.count]
                let points = line.points.map { "\(px($0.0)),\(py($0.1))" }.joined(separator: " ")
                svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.5\" points=\"\(points)\"/>\n"
                if line.points.count <= 20 {
                    for p in line.points { svg += "<circle cx=\"\(px(p.0))\" cy=\"\(py(p.1))\" r=\"3\" fill=\"\(color)\"/>\n" }
                }
                if lines.count > 1 {
                    let ly = top + 14 + Double(i) * 15
                    svg += "<line x1=\"\(x0 + left + 8)\" y1=\"\(ly - 4)\" x2=\"\(x0 + left + 24)\" y2=\"\(ly - 4)\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
                    svg += "<text x=\"\(x0 + left + 28)\" y=\"\(ly)\">\(escape(line.name))</text>\n"
                }
            }
        }
        return svg + "</svg>\n"
    }

    /// An axis over `values`: its range rounded out to ticks at 1, 2 or 5 × 10^k (linear, about
    /// five of them) or at powers of ten (log).
    struct Axis {
        let low: Double, high: Double, log: Bool
        let ticks: [Double]

        init(values: [Double], log: Bool, startAtZero: Bool) {
            self.log = log
            var lo = values.min() ?? 0, hi = values.max() ?? 1
            if log {
                let a = Foundation.floor(Foundation.log10(lo)), b = Foundation.ceil(Foundation.log10(hi))
                low = a; high = Swift.max(b, a + 1)
                // One tick per decade, or per few decades when there are many.
                let every = Swift.max(1, Int(((high - low) / 8).rounded(.up)))
                ticks = stride(from: low, through: high, by: Double(every)).map { Foundation.pow(10, $0) }
                return
            }
            if startAtZero && lo > 0 { lo = 0 }          // steps and epochs: the axis starts at 0
            if hi == lo { let pad = Swift.max(Swift.abs(lo) * 0.05, 0.01); lo -= pad; hi += pad }
            let step = Self.niceStep((hi - lo) / 5)
            let (l, h) = (Foundation.floor(lo / step) * step, Foundation.ceil(hi / step) * step)
            guard step.isFinite, step > 0, l.isFinite, h.isFinite, (h - l) / step <= 20 else {
                // Ranges at the ends of Double (overflow, underflow): the two ends, no grid.
                low = lo; high = hi
                ticks = lo.isFinite && hi.isFinite ? [lo, hi] : []
                return
            }
            low = l; high = h
            ticks = stride(from: low, through: high + step / 2, by: step).map { ($0 / step).rounded() * step }
        }

        /// 1, 2 or 5 × 10^k, the smallest at least `raw`.
        static func niceStep(_ raw: Double) -> Double {
            let magnitude = Foundation.pow(10, Foundation.floor(Foundation.log10(raw)))
            for m in [1.0, 2, 5, 10] where m * magnitude >= raw { return m * magnitude }
            return 10 * magnitude
        }

        /// Where `v` lies between the axis ends, 0...1.
        func fraction(_ v: Double) -> Double {
            let value = log ? Foundation.log10(v) : v
            return high > low ? (value - low) / (high - low) : 0.5
        }
    }

    /// A tick label with up to four significant digits: "0.5", "469", "0.00697", "2.5e+05".
    static func format(_ v: Double) -> String {
        v == 0 ? "0" : String(format: "%.4g", v)
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
    }
}

extension Plot {
    /// The panels of runs' `metrics.jsonl` records: training loss per step (log scale when it
    /// spans decades), test accuracy and test loss per evaluation, one line per run.
    public static func runPanels(_ runs: [(name: String, records: [[String: Any]])]) -> [Series] {
        func points(_ records: [[String: Any]], kind: String, key: String) -> [(Double, Double)] {
            records.filter { $0["kind"] as? String == kind }.compactMap { r in
                guard let s = r["step"] as? Double ?? (r["step"] as? Int).map(Double.init), let v = r[key] as? Double else { return nil }
                return (s, v)
            }
        }
        return [
            Series(title: "training loss", lines: runs.map { Line(name: $0.name, points: points($0.records, kind: "step", key: "loss")) },
                   logScaleAllowed: true),
            Series(title: "test accuracy", lines: runs.map { Line(name: $0.name, points: points($0.records, kind: "epoch", key: "test_accuracy")) }),
            Series(title: "test loss", lines: runs.map { Line(name: $0.name, points: points($0.records, kind: "epoch", key: "test_loss")) },
                   logScaleAllowed: true),
        ]
    }
}
