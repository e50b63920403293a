"""The regression gate: accuracy against a committed baseline (``check``) and throughput as
harness / bare ratios (``perf``)."""
