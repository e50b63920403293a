"""Other tools' result files -> vlbench records, marked as imported (no timings: never on a
throughput plot). One module per tool: clip_benchmark (LAION's CLIP_benchmark JSON dumps)."""
