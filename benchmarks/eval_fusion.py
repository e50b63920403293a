"""Evaluate the shipped fusion checkpoints on a split from cached frozen-tower features.

Late heads: retrieval over all pairs. Cross heads (early, xattn): retrieval after reranking
the top-k of their late prefilter (as ``vlbench fit`` selects them), and, where the data
declares swap pairs (synthetic), pairwise hard-negative accuracy with every pair scored
jointly by the cross head. Prints one JSON line per model.

    python benchmarks/eval_fusion.py --dataset synthetic --split test
    python benchmarks/eval_fusion.py --dataset flickr8k --split dev --data-root /work/shared/data
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--split", default="test")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--rerank-k", type=int, default=10)
    ap.add_argument("--models", nargs="*", default=None, help="default: the three heads of the dataset")
    args = ap.parse_args()

    from harness.models.fusion import model as FU
    from harness.models.fusion.towers import load_towers
    from harness.tasks.hard_negatives import hard_negative_accuracy
    from harness.training import fusion_eval as E
    from harness.training.fusion_data import load_split
    from harness.training.fusion_features import split_features, split_slices

    names = args.models or [n for n, s in FU.SPECS.items() if s.dataset == args.dataset]
    data = load_split(args.dataset, args.split, args.data_root)
    pairs = data.info.get("hard_negative_pairs")
    cache: dict = {}
    for name in names:
        started = time.perf_counter()
        head, towers_spec = FU.load_head(FU.checkpoint_path(name), name)
        if towers_spec not in cache:
            cache[towers_spec] = split_slices(split_features(load_towers(towers_spec), data))
        img, txt = cache[towers_spec]
        spec = FU.SPECS[name]
        row = {"model": name, "dataset": args.dataset, "split": args.split}
        if spec.head == "late":
            emb = E.late_embeddings(head, img, txt)
            row["metrics"] = E.dual_metrics(*emb, data.caption_to_image)
            if pairs:
                row["hard_negatives"] = E.rounded(hard_negative_accuracy(*emb, data.caption_to_image, pairs))
        else:
            pre_head, _ = FU.load_head(FU.checkpoint_path(spec.prefilter), spec.prefilter)
            score = E.pair_scorer(head, img, txt)
            row["rerank"] = {"prefilter": spec.prefilter, "k": args.rerank_k}
            row["metrics"] = E.rerank_metrics(*E.late_embeddings(pre_head, img, txt), data.caption_to_image,
                                              score, args.rerank_k)
            if pairs:
                row["hard_negatives"] = E.cross_hard_negatives(score, len(img["pooled"]), data.caption_to_image, pairs)
        row["seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
