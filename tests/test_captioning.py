"""The captioning task: a deterministic fake captioner's scores equal evaluate_captions on the
same captions (corpus and per image), CLIP-S / RefCLIP-S by hand, generation timing recorded,
captions:FILE matching and its errors, and the task running through the runner untouched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.core.interfaces import Captioner, GenerateOptions, ModelKind, ModelMeta
from harness.datasets.base import RetrievalData
from harness.datasets.images import ArrayImages
from harness.metrics.captioning import evaluate_captions
from harness.tasks import TASKS
from harness.tasks.caption_files import CaptionFileError, match, read_predictions
from harness.tasks.captioning import evaluate, references_of
from harness.tasks.encode import EncodeOptions

CAPTIONS = ["a red circle", "two green triangles in a row", "a blue square left of a yellow diamond",
            "a big purple circle at the top", "a red square"]
REFS = [["a red circle", "one red circle"], ["two green triangles", "green triangles in a row"],
        ["a blue square to the left of a yellow diamond"], ["a purple circle at the top", "a big purple circle"],
        ["a green square", "the red square"]]
KEYS = ["COCO_val2014_000000000007.jpg", "COCO_val2014_000000000042.jpg", "b/x.png", "c/y.png", "z_9.png"]


def pixel_index(image):  # module level: picklable; the image's first pixel holds its index
    return torch.tensor([float(np.asarray(image)[0, 0, 0])])


class FakeCaptioner:
    """Image i -> CAPTIONS[i], reporting one token per word (+1 end token)."""

    name = "fake-captioner"
    checkpoint = {"id": "fake", "sha256": "0" * 64}

    def __init__(self):
        self.last_generated_tokens = 0
        self.calls: list[GenerateOptions] = []

    def image_transform(self):
        return pixel_index

    def generate(self, pixels, options):
        self.calls.append(options)
        out = [CAPTIONS[int(p[0])] for p in pixels]
        self.last_generated_tokens = sum(len(c.split()) + 1 for c in out)
        return out


def data(n: int = 5) -> RetrievalData:
    pixels = np.zeros((n, 4, 4, 3), dtype=np.uint8)
    pixels[:, 0, 0, 0] = np.arange(n)
    caps = [c for refs in REFS[:n] for c in refs]
    owner = [i for i, refs in enumerate(REFS[:n]) for _ in refs]
    return RetrievalData("toy", "test", ArrayImages(pixels, KEYS[:n]), caps, owner, "fp")


def test_fake_captioner_scores_equal_evaluate_captions():
    model = FakeCaptioner()
    assert isinstance(model, Captioner)
    gen = GenerateOptions(max_new_tokens=9, num_beams=2, batch_size=2)
    metrics = ("bleu1", "bleu4", "rouge_l", "cider")
    result = evaluate(model, data(), EncodeOptions(batch_size=2), gen, "python", metrics=metrics)
    want = evaluate_captions(CAPTIONS, REFS, metrics, "python")
    assert result.main_metric == "cider"
    for m in metrics:
        assert result.metrics[m] == pytest.approx(want.corpus[m], abs=1e-9)
        assert result.per_query[m] == pytest.approx(want.per_item[m], abs=1e-9)
    assert result.per_query["caption"] == CAPTIONS
    assert all(call == gen for call in model.calls) and len(model.calls) == 3  # batches of 2, 2, 1
    timing = result.timings["generate"]
    assert timing.items == 5 and timing.batches == 3 and set(timing.latency_ms) == {"p50", "p90", "p99"}
    tokens = sum(len(c.split()) + 1 for c in CAPTIONS)
    assert result.details["generated_tokens"] == tokens
    # tokens/s = images/s x tokens per image of the batches after warm-up (images 2..4)
    post = sum(len(c.split()) + 1 for c in CAPTIONS[2:]) / 3
    assert result.details["generated_tokens_per_s"] == pytest.approx(timing.items_per_s * post)
    assert result.details["generation"] == {"max_new_tokens": 9, "num_beams": 2, "do_sample": False, "batch_size": 2}


def test_clip_s_and_refclip_s_with_a_judge_by_hand():
    from tests.fakes import TableDual

    # texts are embedded by a lookup of the exact string: "A photo depicts " + caption
    prompt = "A photo depicts "
    texts = [prompt + c for c in CAPTIONS[:2]] + [prompt + r for refs in REFS[:2] for r in refs]

    class Judge(TableDual):
        def tokenize(self, batch):
            return torch.tensor([texts.index(t) for t in batch])

    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.nn.functional.normalize(torch.tensor(
        [[0.6, 0.8], [-1.0, 0.0],            # candidates: cos(img0) = .6, cos(img1) = 0 (clamped)
         [0.6, 0.8], [0.0, 1.0],             # image 0's refs: cos with cand 0 = 1.0 and 0.8
         [1.0, 0.0], [0.0, -1.0]]), dim=1)   # image 1's refs: cos with cand 1 = -1 and 0
    judge = Judge(img, txt)
    judge.image_transform = lambda: pixel_index
    result = evaluate(FakeCaptioner(), data(2), EncodeOptions(batch_size=8), GenerateOptions(batch_size=8), "python",
                      judge=(ModelMeta("judge", "x", ModelKind.DUAL, "x", loader=None), judge, None),
                      metrics=("cider",))
    clip0 = 250 * 0.6
    assert result.per_query["clip_s"] == pytest.approx([clip0, 0.0])
    ref0 = 2 * (clip0 / 100) * 1.0 / (clip0 / 100 + 1.0) * 100
    assert result.per_query["refclip_s"] == pytest.approx([ref0, 0.0])
    assert result.metrics["clip_s"] == pytest.approx(clip0 / 2) and result.details["judge"] == "judge"


def test_an_image_without_references_is_named():
    d = data(2)
    d.images = ArrayImages(np.zeros((3, 4, 4, 3), dtype=np.uint8), KEYS[:3])
    with pytest.raises(Exception, match="image b/x.png has no reference caption"):
        references_of(d)


def write(tmp_path: Path, entries) -> Path:
    path = tmp_path / "captions_results.json"
    path.write_text(json.dumps(entries))
    return path


def test_captions_file_matches_ids_names_stems_and_coco_integers(tmp_path):
    path = write(tmp_path, [{"image_id": 7, "caption": "c0"}, {"image_id": "COCO_val2014_000000000042.jpg", "caption": "c1"},
                            {"image_id": "b/x.png", "caption": "c2"}, {"image_id": "y", "caption": "c3"},
                            {"image_id": 9, "caption": "c4"}])
    captions, outside = match(read_predictions(path), KEYS, path, subset=False)
    assert captions == ["c0", "c1", "c2", "c3", "c4"] and outside == 0


@pytest.mark.parametrize("entries, message", [
    ([{"image_id": 7, "caption": "a"}, {"image_id": "7", "caption": "b"}], r"image_id '7' appears more than once"),
    ([{"image_id": 7, "caption": "a"}, {"image_id": "COCO_val2014_000000000007", "caption": "b"}],
     r"image COCO_val2014_000000000007.jpg has two captions"),
    ([{"image_id": 12345, "caption": "a"}], r"image_id '12345' names no image of the dataset"),
    ([{"image_id": 7, "caption": "a"}], r"no caption for image COCO_val2014_000000000042.jpg \(4 of 5 images"),
    ([{"image_id": 7, "caption": None}], r"entry 0 \(image_id 7\): caption is not a string"),
    ({"image_id": 7}, r"expected a JSON list"),
])
def test_captions_file_errors_name_the_culprit(tmp_path, entries, message):
    path = write(tmp_path, entries)
    with pytest.raises(CaptionFileError, match=message):
        match(read_predictions(path), KEYS, path, subset=False)


def test_ids_outside_a_subset_are_counted_not_refused(tmp_path):
    path = write(tmp_path, [{"image_id": 7, "caption": "a"}, {"image_id": 12345, "caption": "b"}])
    assert match(read_predictions(path), KEYS[:1], path, subset=True) == (["a"], 1)


def test_task_accepts_captioners_and_models_that_are_also_captioners():
    task = TASKS.get("captioning")
    coca = ModelMeta("coca", "open_clip", ModelKind.DUAL, "x", loader=None, also=(ModelKind.CAPTIONER,))
    clip = ModelMeta("clip", "open_clip", ModelKind.DUAL, "x", loader=None)
    assert task.accepts(coca) and not task.accepts(clip)
    assert TASKS.get("retrieval").accepts(coca)
    with pytest.raises(Exception, match="captioning needs a captioner model; clip is dual"):
        task.check_model(clip)


def test_captions_file_through_the_runner(tmp_path):
    """captions:FILE on synthetic: the record's metrics equal evaluate_captions of the file's
    captions against the images' own captions; the file's contents are in the run key."""
    from harness.datasets import DatasetRequest, resolve_dataset
    from harness.datasets.base import TaskKind
    from harness.run.runner import RunOptions, RunSpec, run_one

    opts = RunOptions(limit=6, task_options=(("tokenizer", "python"),), cache_dir=str(tmp_path / "cache"))
    d = resolve_dataset("synthetic").load(DatasetRequest("test", TaskKind.CAPTIONING, limit=6, seed=0,
                                                         cache_dir=opts.cache_dir))
    refs = references_of(d)
    cands = [refs[i][0] if i % 2 else "a shape" for i in range(len(refs))]
    path = write(tmp_path, [{"image_id": d.images.key(i), "caption": c} for i, c in enumerate(cands)])
    out = run_one(RunSpec(f"captions:{path}", "synthetic", "captioning", options=opts), tmp_path / "results")
    rec = out.record
    want = evaluate_captions(cands, refs, ("bleu1", "bleu4", "rouge_l", "cider"), "python")
    for m in ("bleu1", "bleu4", "rouge_l", "cider"):
        assert rec.metrics[m] == pytest.approx(want.corpus[m], abs=1e-9)
    assert rec.main_metric == "cider" and rec.model["kind"] == "captioner"
    path.write_text(json.dumps([{"image_id": d.images.key(i), "caption": "a shape"} for i in range(len(refs))]))
    again = run_one(RunSpec(f"captions:{path}", "synthetic", "captioning", options=opts), tmp_path / "results")
    assert again.status.value == "done" and again.record.run_key != rec.run_key
