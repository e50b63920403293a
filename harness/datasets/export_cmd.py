"""``vlbench data export-wds``: the command around :func:`harness.datasets.export_wds.export`."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from harness.datasets import DATASETS
    from harness.datasets.base import DatasetError, DatasetRequest, TaskKind
    from harness.datasets.export_wds import ExportOptions, export

    meta = DATASETS.get(args.dataset)
    views = [t for t in (TaskKind.RETRIEVAL, TaskKind.ZEROSHOT) if t in meta.tasks]
    if not views:
        raise DatasetError(f"{meta.name} has neither a retrieval nor a zeroshot view; the layout holds those only")
    view = TaskKind(args.task) if args.task else views[0]
    if view not in views:
        raise DatasetError(f"{meta.name} has no {view.value} view; it offers: {', '.join(v.value for v in views)}")
    split = args.split or meta.default_split
    data = meta.load(DatasetRequest(split, view, data_root=args.data_root, limit=args.limit, seed=args.seed))
    done = export(data, args.out, split, ExportOptions(args.samples_per_shard, args.max_shard_bytes))
    print(f"wrote {done['samples']} samples in {done['shards']} shard(s) to {done['out']} ({done['type']}; "
          f"{done['reencoded_png']} image(s) re-encoded as PNG); read it with --dataset wds:{args.out}")
    return 0
