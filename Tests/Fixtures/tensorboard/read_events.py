"""Reads Tandem's fixture event file with TensorBoard's own reader and prints what it found,
one line per value; the output is committed as expected.txt, which SummaryWriterTests checks.

    python Tests/Fixtures/tensorboard/read_events.py > Tests/Fixtures/tensorboard/expected.txt
"""
import os

from tensorboard.backend.event_processing import event_accumulator

path = os.path.join(os.path.dirname(__file__), "events.out.tfevents.fixture")
ea = event_accumulator.EventAccumulator(path, size_guidance={"scalars": 0, "histograms": 0})
ea.Reload()
for tag in sorted(ea.Tags()["scalars"]):
    for e in ea.Scalars(tag):
        print(f"scalar {tag} step {e.step} value {e.value} wall_time {e.wall_time}")
for tag in sorted(ea.Tags()["histograms"]):
    for e in ea.Histograms(tag):
        h = e.histogram_value
        print(f"histogram {tag} step {e.step} min {h.min} max {h.max} num {h.num} sum {h.sum} "
              f"bucket_limit {list(h.bucket_limit)} bucket {list(h.bucket)}")
