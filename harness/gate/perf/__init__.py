"""Throughput gate on ratios: each harness path timed against a bare reference doing the
same work on the same data, in one process, interleaved, so the ratio holds on any machine
while absolute items/s do not (issue 15).

    interleave.py   alternate harness and bare runs, median of the per-pair ratios
    benches.py      image encode, text encode, recall scoring, rerank (in-process)
    process.py      a whole ``vlbench run`` process against model load + bare encode
    gate.py         the committed floors file, the comparison, the result JSON the page reads
"""
