"""Flickr8k-Expert / -CF files in the official format over images we have (the real ones
judge test images, absent here), with PROXY judgments: a candidate caption's score comes
from its word overlap with the query image's own reference captions, plus seeded noise.
Not human judgments: numbers on such a fixture only show the pipeline works end to end.

As a script, builds a fixture over real Flickr8k dev images:
    python tests/judgment_fixture.py --source ../shared/data/flickr8k --out /tmp/j8k --images 200
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

STOP = {"a", "an", "the", "is", "are", "in", "on", "of", "and", "with", "at", "to", "his", "her", "its", "while"}


def words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if w not in STOP}


def overlap(caption: str, refs: list[str]) -> float:
    c = words(caption)
    return max((len(c & words(r)) / max(1, len(c | words(r))) for r in refs), default=0.0)


def judgments(captions: dict[str, list[str]], queries: list[str], seed: int = 0, others: int = 6):
    """``[(query, caption image, n, proxy level 1..4), ...]``: per query its own caption #0
    (Expert drops it), its ``others // 2`` most overlapping captions of other images and as
    many random ones."""
    rng = random.Random(seed)
    pool = [(img, n) for img in captions for n in range(len(captions[img]))]
    out = []
    for q in queries:
        cands = [(img, n) for img, n in pool if img != q]
        scored = sorted(cands, key=lambda c: -overlap(captions[c[0]][c[1]], captions[q]))
        picks = scored[:others // 2] + rng.sample(scored[others // 2:], others - others // 2)
        out.append((q, q, 0, 4))
        for img, n in picks:
            j = overlap(captions[img][n], captions[q])
            out.append((q, img, n, 1 + (j > 0.12) + (j > 0.25) + (j > 0.4)))
    return out


def expert_lines(rows, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for q, img, n, level in rows:
        scores = [min(4, max(1, level + rng.choice((-1, 0, 0, 0, 1)))) for _ in range(3)]
        lines.append(f"{q}\t{img}#{n}\t" + "\t".join(map(str, scores)))
    return lines


def crowdflower_lines(rows, seed: int = 0) -> list[str]:
    rng = random.Random(seed + 1)
    lines = []
    for q, img, n, level in rows:
        yes = sum(rng.random() < (level - 1) / 3 for _ in range(3))
        lines.append(f"{q}\t{img}#{n}\t{yes / 3!r}\t{yes}\t{3 - yes}")
    return lines


def write_fixture(root: Path, captions: dict[str, list[str]], queries: list[str], image_bytes,
                  seed: int = 0, split_file: str = "Flickr_8k.devImages.txt") -> Path:
    """An official-layout copy under ``root/flickr8k``; ``image_bytes(name)`` gives each
    query image's file contents. Returns ``root``."""
    base = root / "flickr8k"
    (base / "text").mkdir(parents=True, exist_ok=True)
    (base / "Flicker8k_Dataset").mkdir(exist_ok=True)
    tokens = [f"{img}#{n}\t{c}" for img, caps in captions.items() for n, c in enumerate(caps)]
    (base / "text" / "Flickr8k.token.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    (base / "text" / split_file).write_text("\n".join(queries) + "\n", encoding="utf-8")
    rows = judgments(captions, queries, seed)
    (base / "text" / "ExpertAnnotations.txt").write_text("\n".join(expert_lines(rows, seed)) + "\n")
    (base / "text" / "CrowdFlowerAnnotations.txt").write_text("\n".join(crowdflower_lines(rows, seed)) + "\n")
    for q in queries:
        (base / "Flicker8k_Dataset" / q).write_bytes(image_bytes(q))
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, required=True, help="a Flickr8k copy in the official layout")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--images", type=int, default=200, help="dev images used as queries (seeded choice)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    dev = (args.source / "text" / "Flickr_8k.devImages.txt").read_text().split()
    captions: dict[str, list[str]] = {}
    for line in (args.source / "text" / "Flickr8k.token.txt").read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, cap = line.partition("\t")
        img, _, n = key.rpartition("#")
        if img in dev and n.isdigit():
            captions.setdefault(img, []).append(cap.strip())
    queries = sorted(random.Random(args.seed).sample(dev, args.images))
    keep = {img: captions[img] for img in dev}
    write_fixture(args.out, keep, queries, lambda q: (args.source / "Flicker8k_Dataset" / q).read_bytes(), args.seed)
    print(f"wrote {args.out}/flickr8k: {len(queries)} dev query images, proxy judgments")


if __name__ == "__main__":
    main()
