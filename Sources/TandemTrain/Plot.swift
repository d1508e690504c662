import Foundation

/// Writes line charts as SVG files (one panel per series), e.g. loss and accuracy curves.
public enum Plot {
    /// A named series of (x, y) points.
    public struct Series {
        public var title: String
        public var points: [(Double, Double)]
        public init(title: String, points: [(Double, Double)]) { self.title = title; self.points = points }
    }

    /// Renders the series side by side and writes the SVG atomically to `path`.
    public static func writeSVG(_ series: [Series], xLabel: String, to path: String) throws {
        let panelWidth = 420.0, height = 300.0, margin = 50.0
        var svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(panelWidth) * max(series.count, 1))" height="\(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>

        """
        for (k, s) in series.enumerated() {
            let x0 = Double(k) * panelWidth
            let finite = s.points.filter { $0.0.isFinite && $0.1.isFinite }
            let xs = finite.map(\.0), ys = finite.map(\.1)
            var (xMin, xMax) = (xs.min() ?? 0, xs.max() ?? 1)
            var (yMin, yMax) = (ys.min() ?? 0, ys.max() ?? 1)
            // A single point (or a flat series) still gets visible axes.
            if xMax == xMin { xMin -= 1; xMax += 1 }
            if yMax == yMin { let pad = Swift.max(Swift.abs(yMin) * 0.05, 0.01); yMin -= pad; yMax += pad }
            let xSpan = xMax > xMin ? xMax - xMin : 1, ySpan = yMax > yMin ? yMax - yMin : 1
            func px(_ x: Double) -> Double { x0 + margin + (x - xMin) / xSpan * (panelWidth - 1.5 * margin) }
            func py(_ y: Double) -> Double { height - margin - (y - yMin) / ySpan * (height - 1.8 * margin) }
            svg += "<text x=\"\(x0 + panelWidth / 2)\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">\(escape(s.title))</text>\n"
            svg += "<line x1=\"\(px(xMin))\" y1=\"\(py(yMin))\" x2=\"\(px(xMax))\" y2=\"\(py(yMin))\" stroke=\"black\"/>\n"
            svg += "<line x1=\"\(px(xMin))\" y1=\"\(py(yMin))\" x2=\"\(px(xMin))\" y2=\"\(py(yMax))\" stroke=\"black\"/>\n"
            for y in [yMin, (yMin + yMax) / 2, yMax] {
                svg += "<text x=\"\(px(xMin) - 5)\" y=\"\(py(y) + 4)\" text-anchor=\"end\">\(format(y))</text>\n"
            }
            for x in [xMin, xMax] {
                svg += "<text x=\"\(px(x))\" y=\"\(height - margin + 16)\" text-anchor=\"middle\">\(format(x))</text>\n"
            }
            svg += "<text x=\"\(x0 + panelWidth / 2)\" y=\"\(height - 8)\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
            if !finite.isEmpty {
                let points = finite.map { "\(px($0.0)),\(py($0.1))" }.joined(separator: " ")
                svg += "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"\(points)\"/>\n"
                if finite.count == 1 { svg += "<circle cx=\"\(px(xs[0]))\" cy=\"\(py(ys[0]))\" r=\"3\" fill=\"#1f77b4\"/>\n" }
            }
        }
        svg += "</svg>\n"
        let temporary = path + ".tmp"
        try svg.write(toFile: temporary, atomically: false, encoding: .utf8)
        guard rename(temporary, path) == 0 else { throw TrainError.io("cannot write plot '\(path)'") }
    }

    static func format(_ v: Double) -> String {
        Swift.abs(v) >= 1000 || (Swift.abs(v) < 0.01 && v != 0) ? String(format: "%.2e", v) : String(format: "%.3g", v)
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
    }
}
