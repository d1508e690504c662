import Testing
@testable import TandemTrain

/// The progress line: rate, an ETA for the loop and one for the run.
@Suite struct ProgressBarTests {
    @Test func linesCarryTheRateAndBothETAs() {
        // 100 of 400 batches in 20 s of epoch 1 of 2 (800 steps): 5 it/s, 60 s left in the epoch,
        // 140 s in the run.
        let line = ProgressBar.describe(label: "epoch 1/2", done: 100, total: 400, elapsed: 20, run: (0, 800), fields: "loss 0.5")
        #expect(line == "epoch 1/2 100/400 (25%) 20s, 5.0 it/s, ETA 1m00s (run 2m20s)  loss 0.5", "\(line)")
        // --max-steps 150 ends the run inside the epoch: both ETAs end there.
        let capped = ProgressBar.describe(label: "epoch 1/2", done: 100, total: 400, elapsed: 20, run: (0, 150), fields: "")
        #expect(capped == "epoch 1/2 100/400 (25%) 20s, 5.0 it/s, ETA 10s (run 10s)", "\(capped)")
        // Finished: no ETA.
        #expect(ProgressBar.describe(label: "eval", done: 10, total: 10, elapsed: 3, run: nil, fields: "")
                == "eval 10/10 (100%) 3s, 3.3 it/s")
        #expect(ProgressBar.duration(7384) == "2h03m" && ProgressBar.duration(59.6) == "1m00s")
        // Resumed at batch 400 of 469: the rate counts the 10 batches this process ran in 2 s.
        let resumed = ProgressBar.describe(label: "epoch 2/2", done: 410, total: 469, elapsed: 2, run: (469, 938), fields: "",
                                           initial: 400)
        #expect(resumed == "epoch 2/2 410/469 (87%) 2s, 5.0 it/s, ETA 12s (run 12s)", "\(resumed)")
    }
}
