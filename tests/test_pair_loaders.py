"""Image + text -> label loaders on fixtures written in each release's exact layout, with
hand-checked counts and labels: Hateful Memes, MVSA-Single / MVSA-Multiple (the Xu & Mao
cleaning table case by case, mixed encodings, the seeded 8:1:1 split), MM-IMDb (multi-label),
NLVR (six images per sentence; structured_rep never read), NLVR2 (left/right pairs) and
the bad input each must name by file and line."""

from __future__ import annotations

import io
import json
import warnings
from functools import lru_cache
from pathlib import Path

import pytest

from harness.datasets import DATASETS
from harness.datasets.base import DatasetError, DatasetRequest, TaskKind
from harness.datasets.mvsa import combine, majority, split_of

ITC = TaskKind.IMAGE_TEXT_CLASSIFICATION


@lru_cache(maxsize=4)
def png_bytes(shade: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (shade, 20, 20)).save(buf, "PNG")
    return buf.getvalue()


def write_png(path: Path, shade: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(shade))
    return path


def write_lines(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def load(name: str, split: str, root: Path, **kw):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        data = DATASETS.get(name).load(DatasetRequest(split, ITC, data_root=str(root), **kw))
    return data, "\n".join(str(w.message) for w in rec)


def names(paths) -> list[str]:
    return [p.name for p in paths]


# ------------------------------------------------------------------ Hateful Memes

def make_memes(root: Path, skip_images=()) -> Path:
    base = root / "hateful_memes"
    rows = {"train": [(42953, 0, "its their character not their color that matters"), (23058, 1, "don't be afraid"),
                      (13894, 0, "putting bows on your pet")],
            "dev_seen": [(8291, 1, "white people is this a shooting range"), (46971, 0, "bravery at its finest")],
            "dev_unseen": [(1765, 0, "cooking for my family")],
            "test_seen": [(16395, 1, "the jihad squad"), (37405, 0, "introducing fidget spinner"),
                          (94180, 1, "a difference")],
            "test_unseen": [(10399, 0, "a cat")]}
    for split, items in rows.items():
        write_lines(base / f"{split}.jsonl", [{"id": i, "img": f"img/{i:05d}.png", "label": y, "text": t}
                                              for i, y, t in items])
        for i, _, _ in items:
            if i not in skip_images:
                write_png(base / "img" / f"{i:05d}.png")
    return base


def test_hateful_memes_reads_every_split(tmp_path: Path) -> None:
    make_memes(tmp_path)
    d, text = load("hateful-memes", "test_seen", tmp_path)
    assert d.texts == ["the jihad squad", "introducing fidget spinner", "a difference"]
    assert d.labels == [1, 0, 1] and d.classnames == ["not hateful", "hateful"] and d.kind == "binary"
    assert names(d.images.paths) == ["16395.png", "37405.png", "94180.png"]
    assert d.origins == ["test_seen.jsonl:1", "test_seen.jsonl:2", "test_seen.jsonl:3"]
    assert d.info["count_mismatch"] == ["3 items (expected 1000)"] and "loaded 3 items (expected 1000)" in text
    assert len(d.info["sha256"]["test_seen.jsonl"]) == 64
    sizes = {s: len(load("hateful-memes", s, tmp_path)[0]) for s in DATASETS.get("hateful-memes").splits}
    assert sizes == {"train": 3, "dev_seen": 2, "dev_unseen": 1, "test_seen": 3, "test_unseen": 1}
    assert d.info["empty_texts"] == 0


def test_an_empty_text_is_kept_and_said(tmp_path: Path) -> None:
    base = make_memes(tmp_path)
    write_lines(base / "test_seen.jsonl", [{"id": 16395, "img": "img/16395.png", "label": 1, "text": " "}])
    d, text = load("hateful-memes", "test_seen", tmp_path)
    assert d.texts == [" "] and d.info["empty_texts"] == 1
    assert "1 item(s) have an empty text (e.g. test_seen.jsonl:1); they are kept" in text
    assert DATASETS.get("hateful_memes").name == "hateful-memes"


@pytest.mark.parametrize("row, message", [
    ({"id": 1, "img": "img/00001.png", "label": "1", "text": "x"}, r"test_seen.jsonl:2: field 'label' must be int, got str '1'"),
    ({"id": 1, "img": "img/00001.png", "label": 2, "text": "x"}, r"test_seen.jsonl:2: field 'label' must be 0 or 1, got 2"),
    ({"id": 1, "img": "img/00001.png", "label": True, "text": "x"}, r"test_seen.jsonl:2: field 'label' must be int, got bool"),
    ({"id": 1, "img": "img/00001.png", "text": "x"}, r"test_seen.jsonl:2: missing field 'label'"),
    ({"id": 1, "img": "img/00001.png", "label": 0, "text": 5}, r"test_seen.jsonl:2: field 'text' must be str"),
    ({"id": 1, "img": "../secret.png", "label": 0, "text": "x"}, r"test_seen.jsonl:2: image path '../secret.png' leaves"),
    ("{not json", r"test_seen.jsonl:2: not valid JSON"),
    ("[1, 2]", r"test_seen.jsonl:2: each line must be a JSON object, got list"),
])
def test_hateful_memes_bad_line_names_file_and_line(tmp_path: Path, row, message) -> None:
    base = make_memes(tmp_path)
    write_lines(base / "test_seen.jsonl", [{"id": 16395, "img": "img/16395.png", "label": 1, "text": "a"}, row])
    with pytest.raises(DatasetError, match=message):
        load("hateful-memes", "test_seen", tmp_path)


def test_hateful_memes_missing_images_and_empty_split(tmp_path: Path) -> None:
    base = make_memes(tmp_path, skip_images={37405, 23058})
    with pytest.raises(DatasetError, match=r"hateful-memes/test_seen: 1 of 3 images are missing .*"
                                           r"test_seen.jsonl:2 \(img/37405.png\).*must be complete"):
        load("hateful-memes", "test_seen", tmp_path)
    d, text = load("hateful-memes", "train", tmp_path)  # train may be partial: dropped, counted, named
    assert d.labels == [0, 0] and d.info["dropped_missing_images"] == 1
    assert "train.jsonl:2 (img/23058.png)" in text
    (base / "dev_unseen.jsonl").write_text("\n\n")
    with pytest.raises(DatasetError, match=r"dev_unseen.jsonl: empty split \(no items\)"):
        load("hateful-memes", "dev_unseen", tmp_path)
    (base / "test_unseen.jsonl").unlink()
    with pytest.raises(DatasetError, match=r"hateful-memes/test_unseen: test_unseen.jsonl not found"):
        load("hateful-memes", "test_unseen", tmp_path)


# ------------------------------------------------------------------ MVSA

# (text, image) annotation -> cleaned label, every row of Xu & Mao's combination table
TABLE = [(("positive", "positive"), "positive"), (("neutral", "neutral"), "neutral"),
         (("negative", "negative"), "negative"), (("neutral", "positive"), "positive"),
         (("positive", "neutral"), "positive"), (("neutral", "negative"), "negative"),
         (("negative", "neutral"), "negative"), (("positive", "negative"), "inconsistent"),
         (("negative", "positive"), "inconsistent")]


@pytest.mark.parametrize("pair, want", TABLE)
def test_mvsa_combination_table(pair, want) -> None:
    assert combine(*pair) == want


def test_mvsa_majority_of_three() -> None:
    assert majority(["positive", "positive", "negative"]) == "positive"
    assert majority(["neutral", "negative", "neutral"]) == "neutral"
    assert majority(["positive", "neutral", "negative"]) is None
    assert majority(["negative"]) == "negative"


def make_mvsa(root: Path, folder: str, rows: list[tuple[int, list[tuple[str, str]]]], texts=None,
              header_columns: int | None = None) -> Path:
    base = root / folder
    cols = header_columns or len(rows[0][1])
    lines = ["ID\t" + "\t".join(["text,image"] * cols)]
    lines += [f"{i}\t" + "\t".join(f"{t},{im}" for t, im in votes) for i, votes in rows]
    (base / "data").mkdir(parents=True, exist_ok=True)
    (base / "labelResultAll.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for i, _ in rows:
        write_png(base / "data" / f"{i}.jpg")  # the release's .jpg names; the loader checks signatures, not names
        blob = (texts or {}).get(i, f"tweet number {i} #fun".encode())
        (base / "data" / f"{i}.txt").write_bytes(blob)
    return base


def single_rows() -> list[tuple[int, list[tuple[str, str]]]]:
    rows = [(k + 1, [pair]) for k, (pair, _) in enumerate(TABLE)]  # ids 1..9 are the table
    rows += [(k, [("positive", "neutral")]) for k in range(10, 21)]  # 11 fillers, all positive
    return rows


def all_splits(name: str, root: Path) -> dict:
    out = {}
    for split in ("train", "val", "test"):
        d, _ = load(name, split, root)
        out[split] = {int(p.stem): (d.classnames[y], t) for p, y, t in zip(d.images.paths, d.labels, d.texts)}
    return out


def test_mvsa_single_cleaning_split_and_encodings(tmp_path: Path) -> None:
    texts = {1: "caf\u00e9 \u2019n\u2019 cake".encode("cp1252"), 2: b"ok \x81 byte", 3: "\ufeffna\u00efve".encode("utf-8")}
    make_mvsa(tmp_path, "MVSA_Single", single_rows(), texts)
    splits = all_splits("mvsa-single", tmp_path)
    assert {k: len(v) for k, v in splits.items()} == {"train": 16, "val": 1, "test": 1}  # 18 kept, 8:1:1
    merged = {i: v for part in splits.values() for i, v in part.items()}
    assert sorted(merged) == [1, 2, 3, 4, 5, 6, 7] + list(range(10, 21))  # 8 and 9: positive vs negative
    for i, (_, want) in enumerate(TABLE[:7], 1):
        assert merged[i][0] == want, i
    assert all(merged[i][0] == "positive" for i in range(10, 21))
    assert merged[1][1] == "caf\u00e9 \u2019n\u2019 cake" and merged[2][1] == "ok \x81 byte"
    assert merged[3][1] == "na\u00efve" and merged[10][1] == "tweet number 10 #fun"
    d, text = load("mvsa-single", "train", tmp_path)
    assert d.info["dropped_inconsistent"] == 2 and d.info["dropped_no_majority"] == 0 and d.info["annotators"] == 1
    assert "2 item(s) whose text and image sentiments are positive vs negative dropped" in text
    assert "labelResultAll.txt:9, labelResultAll.txt:10" in text  # ids 8 and 9 sit on lines 9 and 10
    rule = d.info["split_rule"]
    assert rule["seed"] == 0 and rule["sizes"] == {"train": 16, "val": 1, "test": 1}
    fallback = [load("mvsa-single", s, tmp_path)[0].info["fallback_decoded_texts"] for s in ("train", "val", "test")]
    total: dict[str, int] = {}
    for f in fallback:
        for enc, n in f.items():
            total[enc] = total.get(enc, 0) + n
    assert total == {"cp1252": 1, "latin-1": 1}
    where = next(s for s, part in splits.items() if 1 in part)
    _, text = load("mvsa-single", where, tmp_path)
    assert "decoded by a fallback: 1 by cp1252 (e.g. 1.txt)" in text


def test_mvsa_split_is_seeded_and_disjoint() -> None:
    ids = [str(i) for i in range(1, 101)]
    a, b = split_of(ids, 0), split_of(list(reversed(ids)), 0)
    assert a == b and {k: len(v) for k, v in a.items()} == {"train": 80, "val": 10, "test": 10}
    assert sorted(sum(a.values(), []), key=int) == ids
    assert split_of(ids, 1)["test"] != a["test"]


def test_mvsa_multiple_majority_then_table(tmp_path: Path) -> None:
    P, U, N = "positive", "neutral", "negative"
    rows = [(1, [(P, P), (P, U), (N, P)]),   # text P,P,N -> P; image P,U,P -> P: positive
            (2, [(P, N), (U, N), (N, N)]),   # text P,U,N: no majority -> dropped
            (3, [(U, N), (U, N), (P, P)]),   # text U; image N -> negative
            (4, [(P, N), (P, N), (P, N)]),   # P vs N -> inconsistent
            (5, [(U, U), (U, P), (N, U)])]   # text U,U,N -> U; image U,P,U -> U: neutral
    rows += [(k, [(P, P), (P, P), (P, P)]) for k in range(6, 26)]
    make_mvsa(tmp_path, "MVSA", rows)
    merged = {i: v[0] for part in all_splits("mvsa-multiple", tmp_path).values() for i, v in part.items()}
    assert len(merged) == 23 and 2 not in merged and 4 not in merged
    assert (merged[1], merged[3], merged[5]) == ("positive", "negative", "neutral")
    d, text = load("mvsa-multiple", "test", tmp_path)
    assert d.info["annotators"] == 3 and d.info["dropped_no_majority"] == 1 and d.info["dropped_inconsistent"] == 1
    assert "1 item(s) without a majority label" in text and "labelResultAll.txt:3" in text


def test_mvsa_bad_input_names_file_and_line(tmp_path: Path) -> None:
    base = make_mvsa(tmp_path, "MVSA", [(k, [("positive", "positive")] * 3) for k in range(1, 21)])
    label_file = base / "labelResultAll.txt"
    good = label_file.read_text()
    label_file.write_text(good + "21\tpositive,positive\tpositive,positive\n")
    with pytest.raises(DatasetError, match=r"labelResultAll.txt:22: 2 annotator column\(s\), the header has 3"):
        load("mvsa-multiple", "train", tmp_path)
    label_file.write_text(good + "21\tpositive,happy\tpositive,positive\tpositive,positive\n")
    with pytest.raises(DatasetError, match=r"labelResultAll.txt:22: expected 'text,image' labels .* got 'positive,happy'"):
        load("mvsa-multiple", "train", tmp_path)
    label_file.write_text(good + "3\tneutral,neutral\tneutral,neutral\tneutral,neutral\n")
    with pytest.raises(DatasetError, match=r"labelResultAll.txt:22: ID 3 again \(first on line 4\)"):
        load("mvsa-multiple", "train", tmp_path)
    label_file.write_text(good)
    (base / "data" / "7.txt").unlink()
    with pytest.raises(DatasetError, match=r"data/7.txt: text file missing \(item of labelResultAll.txt:8\)"):
        all_splits("mvsa-multiple", tmp_path)
    label_file.write_text("ID\ttext,image\n")
    with pytest.raises(DatasetError, match=r"labelResultAll.txt: empty split"):
        load("mvsa-multiple", "train", tmp_path)


# ------------------------------------------------------------------ MM-IMDb

def make_mmimdb(root: Path) -> Path:
    base = root / "mmimdb"
    movies = {"0000001": (["short plot", "the longest plot of the three", "mid plot"], ["Drama", "Comedy"]),
              "0000002": (["a heist"], ["Crime", "Thriller", "News"]),
              "0000003": (["space"], ["Sci-Fi"]),
              "0000004": (["a war story", "a war story"], ["War", "History", "Drama"]),
              "0000005": (["toons"], ["Animation", "Family", "Talk-Show"])}
    split = {"train": ["0000001", "0000002", "0000003"], "dev": ["0000004"], "test": ["0000005", "0000001"]}
    (base / "dataset").mkdir(parents=True)
    (base / "split.json").write_text(json.dumps(split))
    for i, (plot, genres) in movies.items():
        (base / "dataset" / f"{i}.json").write_text(json.dumps({"plot": plot, "genres": genres, "title": i}))
        write_png(base / "dataset" / f"{i}.jpeg")
    return base


def test_mmimdb_multilabel(tmp_path: Path) -> None:
    make_mmimdb(tmp_path)
    d, _ = load("mmimdb", "train", tmp_path)
    assert d.multilabel and d.kind == "multilabel" and len(d.classnames) == 23
    assert d.texts == ["the longest plot of the three", "a heist", "space"]
    assert [[d.classnames[y] for y in ys] for ys in d.labels] == [["Drama", "Comedy"], ["Thriller", "Crime"],
                                                                 ["Sci-Fi"]]
    assert d.labels == [[0, 1], [3, 4], [10]] and d.info["ignored_genres"] == {"News": 1}
    assert names(d.images.paths) == ["0000001.jpeg", "0000002.jpeg", "0000003.jpeg"]
    t, _ = load("mmimdb", "test", tmp_path)
    assert t.labels == [[12, 16], [0, 1]] and t.info["ignored_genres"] == {"Talk-Show": 1}
    assert load("mmimdb", "dev", tmp_path)[0].labels == [[0, 14, 15]]
    assert t.class_counts()[0] == 1 and t.counts()["labels_used"] == 4


def test_mmimdb_bad_movies(tmp_path: Path) -> None:
    base = make_mmimdb(tmp_path)
    (base / "dataset" / "0000003.json").write_text(json.dumps({"plot": ["x"], "genres": ["News"]}))
    with pytest.raises(DatasetError, match=r"0000003.json: a multi-label item with no labels \(genres \['News'\]"):
        load("mmimdb", "train", tmp_path)
    (base / "dataset" / "0000003.json").write_text(json.dumps({"plot": "x", "genres": ["Drama"]}))
    with pytest.raises(DatasetError, match=r"0000003.json: field 'plot' must be list, got str"):
        load("mmimdb", "train", tmp_path)
    (base / "dataset" / "0000003.json").unlink()
    with pytest.raises(DatasetError, match=r"0000003.json: movie file missing"):
        load("mmimdb", "train", tmp_path)
    (base / "dataset" / "0000005.jpeg").unlink()
    with pytest.raises(DatasetError, match=r"mmimdb/test: 1 of 2 images are missing .*dataset/0000005.json "
                                           r"\(dataset/0000005.jpeg\)"):
        load("mmimdb", "test", tmp_path)
    (base / "split.json").write_text(json.dumps({"train": [], "dev": ["0000004"], "test": []}))
    with pytest.raises(DatasetError, match=r"split.json: empty split 'train'"):
        load("mmimdb", "train", tmp_path)


# ------------------------------------------------------------------ NLVR

SECRET = "#0099ff"  # a colour code only structured_rep holds


def nlvr_line(sentence: str, label: str, identifier: str, directory: str | None) -> dict:
    row = {"sentence": sentence, "label": label, "identifier": identifier,
           "evals": {"r0": label, "r1": label},
           "structured_rep": [[{"y_loc": 80, "type": "square", "color": SECRET, "x_loc": 40, "size": 20}], [], []]}
    if directory is not None:
        row["directory"] = directory
    return row


def make_nlvr(root: Path, split: str = "dev", skip=()) -> Path:
    base = root / "nlvr" / split
    items = [("There is a blue square", "true", "12-0", "0"), ("There are two towers", "false", "7-1", "1"),
             ("No yellow triangle", "true", "7-2", None)]  # the first release had no directory field
    write_lines(base / f"{split}.json", [nlvr_line(*it) for it in items])
    for _, _, identifier, directory in items:
        for k in range(6):
            file = f"{split}-{identifier}-{k}.png"
            if file not in skip:
                write_png(base / "images" / (directory or "3") / file, shade=10 * k)
    return base


def test_nlvr_six_images_per_sentence(tmp_path: Path) -> None:
    make_nlvr(tmp_path)
    d, _ = load("nlvr", "dev", tmp_path)
    assert len(d) == 18 and d.counts()["groups"] == 3 and d.info["sentences"] == 3
    assert d.texts == ["There is a blue square"] * 6 + ["There are two towers"] * 6 + ["No yellow triangle"] * 6
    assert d.labels == [1] * 6 + [0] * 6 + [1] * 6 and d.classnames == ["false", "true"]
    assert d.groups == ["12-0"] * 6 + ["7-1"] * 6 + ["7-2"] * 6
    assert names(d.images.paths[:6]) == [f"dev-12-0-{k}.png" for k in range(6)]
    assert d.images.paths[6].parent.name == "1" and d.images.paths[12].parent.name == "3"
    assert d.origins[6] == "dev.json:2"
    assert d.holdout_groups == ["12"] * 6 + ["7"] * 12  # presentation 7: examples 7-1 and 7-2 together


def test_nlvr_structured_rep_never_reaches_a_model(tmp_path: Path) -> None:
    make_nlvr(tmp_path)
    d, _ = load("nlvr", "dev", tmp_path)
    info = {k: v for k, v in d.info.items() if k != "root"}  # (the tmp folder is named after this test)
    everything = json.dumps([d.texts, d.labels, d.groups, d.origins, info, d.classnames], default=str)
    assert SECRET not in everything and "structured_rep" not in everything and "evals" not in everything
    assert "square" in everything  # the sentence is there; only the symbolic scene is not


def test_nlvr_bad_input(tmp_path: Path) -> None:
    base = make_nlvr(tmp_path, skip={"dev-7-1-3.png"})
    with pytest.raises(DatasetError, match=r"nlvr/dev: 1 of 18 images are missing .*dev.json:2 "
                                           r"\(images/1/dev-7-1-3.png\)"):
        load("nlvr", "dev", tmp_path)
    write_lines(base / "dev.json", [nlvr_line("x", "yes", "12-0", "0")])
    with pytest.raises(DatasetError, match=r"dev.json:1: field 'label' must be \"true\" or \"false\", got 'yes'"):
        load("nlvr", "dev", tmp_path)


def test_nlvr_subset_keeps_all_six(tmp_path: Path) -> None:
    make_nlvr(tmp_path)
    d, _ = load("nlvr", "dev", tmp_path, limit=12, seed=3)
    assert len(d) == 12 and all(d.groups.count(g) == 6 for g in set(d.groups))
    assert d.info["subset"] == {"limit": 12, "seed": 3, "unit": "groups"}


# ------------------------------------------------------------------ NLVR2

def make_nlvr2(root: Path, skip=()) -> Path:
    base = root / "nlvr2"
    dev = [("dev-850-0-0", "The left image has two dogs.", "True"), ("dev-850-1-0", "The left image has two dogs.", "False"),
           ("dev-850-0-1", "Both images show snow.", "False")]
    write_lines(base / "data" / "dev.json", [{"identifier": i, "sentence": s, "label": y, "left_url": "http://x/l.jpg",
                                               "right_url": "http://x/r.jpg", "writer": "1"} for i, s, y in dev])
    write_lines(base / "data" / "train.json", [{"identifier": "train-3-2-0", "sentence": "A cat.", "label": "True",
                                                 "directory": 14}])
    for stem in ("dev-850-0", "dev-850-1"):
        for side in ("img0", "img1"):
            if f"{stem}-{side}.png" not in skip:
                write_png(base / "images" / "dev" / f"{stem}-{side}.png", shade=60 if side == "img0" else 160)
    for side in ("img0", "img1"):
        write_png(base / "images" / "train" / "14" / f"train-3-2-{side}.png")
    return base


def test_nlvr2_pairs(tmp_path: Path) -> None:
    make_nlvr2(tmp_path)
    d, _ = load("nlvr2", "dev", tmp_path)
    assert d.is_pair and len(d) == 3 and d.labels == [1, 0, 0]
    assert names(d.images.paths) == ["dev-850-0-img0.png", "dev-850-1-img0.png", "dev-850-0-img0.png"]
    assert names(d.images_right.paths) == ["dev-850-0-img1.png", "dev-850-1-img1.png", "dev-850-0-img1.png"]
    assert d.groups == ["dev-850--0", "dev-850--0", "dev-850--1"]  # one sentence across its image pairs
    assert "concatenated" in d.info["pair_mode"]
    assert d.holdout_groups == ["850"] * 3  # the image set
    assert d.counts() == {"items": 3, "images": 3, "classes": 2, "labels_used": 2, "images_right": 3, "groups": 2,
                          "holdout_groups": 1}
    t, _ = load("nlvr2", "train", tmp_path)  # train images sit in numbered folders
    assert t.images_right.paths[0].parent.name == "14"


def test_nlvr2_missing_right_image_and_bad_identifier(tmp_path: Path) -> None:
    base = make_nlvr2(tmp_path, skip={"dev-850-1-img1.png"})
    with pytest.raises(DatasetError, match=r"nlvr2/dev: 1 of 4 images are missing .*dev.json:2 \(dev-850-1-img1.png\)"):
        load("nlvr2", "dev", tmp_path)
    write_lines(base / "data" / "dev.json", [{"identifier": "dev-850-0", "sentence": "x", "label": "True"}])
    with pytest.raises(DatasetError, match=r"dev.json:1: identifier 'dev-850-0' is not split-set-pair-sentence"):
        load("nlvr2", "dev", tmp_path)


def test_nlvr2_run_key_covers_every_right_image(tmp_path: Path) -> None:
    """A probe fits on train's pairs and scores dev's: rewriting a right image of either split
    under its old name is a new run (the key's image digests cover both sides)."""
    from harness.run.runner import Resolved, RunSpec, images_content
    from harness.tasks.options import RunOptions

    base = make_nlvr2(tmp_path)
    run = Resolved.of(RunSpec("tiny-clip-synth", "nlvr2", "image_text_classification", "dev",
                              options=RunOptions(data_root=str(tmp_path))))

    def digests() -> dict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = run.load_data()
        return images_content(data, run.options)

    before = digests()
    write_png(base / "images" / "train" / "14" / "train-3-2-img1.png", shade=200)  # train's right image
    after_train = digests()
    assert after_train["train_images_digest"] != before["train_images_digest"]
    assert after_train["images_digest"] == before["images_digest"]
    write_png(base / "images" / "dev" / "dev-850-1-img1.png", shade=30)  # a dev right image
    assert digests()["images_digest"] != after_train["images_digest"]
