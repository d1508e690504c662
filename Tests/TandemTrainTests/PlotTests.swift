import Testing
@testable import TandemTrain

/// Plot axes: round ticks, a log scale for a loss spanning decades, a single evaluation on a
/// step axis from 0, and labels that keep their digits.
@Suite struct PlotTests {
    @Test func axesHaveRoundTicks() {
        let steps = Plot.Axis(values: [468, 470], log: false, startAtZero: true)
        #expect(steps.ticks == [0, 100, 200, 300, 400, 500])
        let single = Plot.Axis(values: [469], log: false, startAtZero: true)
        #expect(single.ticks.first == 0 && single.fraction(469) > 0.8, "\(single.ticks)")
        let loss = Plot.Axis(values: [2.3, 0.0069], log: true, startAtZero: false)
        #expect(loss.ticks == [0.001, 0.01, 0.1, 1, 10])
        #expect(Plot.Axis.niceStep(0.37) == 0.5 && Plot.Axis.niceStep(130) == 200)
    }

    @Test func labelsKeepTheirDigits() {
        #expect(Plot.format(6.97e-3) == "0.00697" && Plot.format(0.0001) == "0.0001" && Plot.format(469) == "469")
        #expect(Plot.format(0.30000000000000004) == "0.3")
        // 1.5e5 and 2.5e5 keep their digits (one digit rounded them to 2e+05 both).
        #expect(Plot.format(150_000) == "1.5e+05" && Plot.format(250_000) == "2.5e+05")
        // Ranges at the ends of Double give two ticks, no endless grid.
        #expect(Plot.Axis(values: [-1e308, 1e308], log: false, startAtZero: false).ticks.count == 2)
        #expect(Plot.Axis(values: [0, 1e-323], log: false, startAtZero: false).ticks.count <= 21)
        let svg = Plot.render(Plot.runPanels([(name: "a", records: [
            ["kind": "step", "step": 10, "loss": 2.3], ["kind": "step", "step": 20, "loss": 0.0069],
            ["kind": "epoch", "step": 20, "test_accuracy": 0.97, "test_loss": 0.09],
        ])]), xLabel: "step")
        #expect(svg.contains("training loss (log scale)") && svg.contains(">0.001<") && svg.contains(">step<"))
    }
}
