"""The run key covers the contents of local weights: a changed checkpoint is re-run, not skipped."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.models import MODELS, resolve
from harness.models.fusion import model as fusion
from harness.models.weights import SHIPPED_DIR, content_digest, sha256_file
from harness.run import runner
from harness.tasks import TASKS
from harness.tasks.encode import _content_identity


def perturb(path: Path) -> None:
    """Rewrite a safetensors checkpoint with one weight nudged (same names and shapes)."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    name = sorted(k for k, v in state.items() if v.is_floating_point())[0]
    state[name] = state[name] + 1e-3
    save_file(state, str(path))


def test_changed_weights_file_is_rerun_and_same_file_skipped(tmp_path):
    ckpt = tmp_path / "w" / "tiny.safetensors"
    ckpt.parent.mkdir()
    shutil.copy(SHIPPED_DIR / "tiny-clip-synth.safetensors", ckpt)
    original = ckpt.read_bytes()
    opts = runner.RunOptions(batch_size=16, limit=16, num_workers=0, weights=str(ckpt), use_cache=False)
    spec = runner.RunSpec("tiny-clip-synth", "synthetic", "retrieval", "val", opts)
    results = tmp_path / "results"

    first = runner.run_one(spec, results)
    assert first.status == runner.RunStatus.DONE
    assert first.record.model["params"] == MODELS.get("tiny-clip-synth").params  # what list models shows
    again = runner.run_one(spec, results)
    assert again.status == runner.RunStatus.SKIPPED and again.path == first.path

    perturb(ckpt)
    changed = runner.run_one(spec, results)
    assert changed.status == runner.RunStatus.DONE
    assert changed.record.run_key != first.record.run_key and changed.path != first.path
    assert changed.record.model["checkpoint_sha256"] == sha256_file(ckpt) != first.record.model["checkpoint_sha256"]

    ckpt.write_bytes(original)  # the same bytes again: the first record is found and kept
    back = runner.run_one(spec, results)
    assert back.status == runner.RunStatus.SKIPPED and back.path == first.path


def test_shipped_checkpoints_are_keyed_by_content(tmp_path, monkeypatch):
    """A re-trained shipped checkpoint (same file name) gives another key; the prefilter's too."""
    shipped = tmp_path / "weights"
    shipped.mkdir()
    for name in ("fusion-xattn-synth", "fusion-late-synth"):
        shutil.copy(fusion.checkpoint_path(name), shipped / f"{name}.safetensors")
    monkeypatch.setattr(fusion, "WEIGHTS_DIR", shipped)
    meta = MODELS.get("fusion-xattn-synth")
    opts = TASKS.get("retrieval").settings(meta, runner.RunOptions())
    assert opts.prefilter == "fusion-late-synth"
    before = runner.weights_content(meta, opts, TASKS.get("retrieval"))
    head, pre = (f"{n}.safetensors" for n in ("fusion-xattn-synth", "fusion-late-synth"))
    towers = [[f.name, sha256_file(f)] for f in fusion.local_files("fusion-late-synth", None)[1:]]
    assert before == [{"weights": [[head, sha256_file(shipped / head)], *towers],
                       "prefilter_weights": [[pre, sha256_file(shipped / pre)], *towers]}]
    assert runner.weights_content(meta, opts, TASKS.get("retrieval")) == before  # stable
    perturb(shipped / "fusion-xattn-synth.safetensors")
    after_head = runner.weights_content(meta, opts, TASKS.get("retrieval"))
    assert after_head[0]["weights"] != before[0]["weights"] and after_head[0]["prefilter_weights"] == before[0][
        "prefilter_weights"]
    perturb(shipped / "fusion-late-synth.safetensors")
    assert runner.weights_content(meta, opts, TASKS.get("retrieval"))[0]["prefilter_weights"] != before[0]["prefilter_weights"]


def test_tiny_clip_files_are_what_its_loader_reads():
    synth, rand = MODELS.get("tiny-clip-synth"), MODELS.get("tiny-clip-random")
    assert [p.name for p in synth.local_files(None)] == [
        "tiny-clip-synth.json", "tiny-clip-synth.tokens.json", "tiny-clip-synth.safetensors"]
    assert synth.local_files("/x/other.safetensors")[-1] == Path("/x/other.safetensors")
    assert [p.name for p in rand.local_files(None)] == ["tiny-clip-synth.json", "tiny-clip-synth.tokens.json"]
    assert all(p.is_file() for p in synth.local_files(None))


def test_hub_models_keep_the_old_key_unless_given_local_weights(tmp_path):
    meta = resolve("clip")
    assert meta.local_files is None and runner.weights_content(meta, runner.RunOptions()) == []
    local = tmp_path / "ckpt"
    local.mkdir()
    (local / "a.bin").write_bytes(b"one")
    (local / "sub").mkdir()
    (local / "sub" / "b.bin").write_bytes(b"two")
    content = runner.weights_content(meta, runner.RunOptions(weights=str(local)))
    assert content == [{"weights": [["ckpt", content_digest(local)]]}]
    (local / "sub" / "b.bin").write_bytes(b"TWO")
    assert runner.weights_content(meta, runner.RunOptions(weights=str(local))) != content
    # a missing path is not an error here: the loader names it (tests/test_cli.py)
    assert runner.weights_content(meta, runner.RunOptions(weights=str(tmp_path / "no"))) == [
        {"weights": [["no", None]]}]


def test_file_digest_is_cached_by_stat_but_never_for_fresh_files(tmp_path):
    import os
    import time

    from harness.models.weights import file_digest

    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 10)
    fresh = file_digest(f)
    f.write_bytes(b"b" * 10)  # same size, maybe the same timestamp tick: still seen
    assert file_digest(f) == sha256_file(f) != fresh
    old = time.time_ns() - 60 * 10**9
    os.utime(f, ns=(old, old))
    cached = file_digest(f)
    assert file_digest(f) == cached
    f.write_bytes(b"c" * 10)
    os.utime(f, ns=(old, old))  # an edit that puts size and mtime back: its ctime still moved
    assert file_digest(f) == sha256_file(f) != cached


@pytest.mark.parametrize("name", ["fusion-late-synth", "fusion-early-flickr8k"])
def test_fusion_local_files_are_the_head_then_its_towers(name):
    from harness.models.encoders import efficientnet_lite0_weights, minilm_dir

    meta = MODELS.get(name)
    files = meta.local_files(None)
    assert files[0] == fusion.checkpoint_path(name)
    assert files[1] == efficientnet_lite0_weights()  # the towers its checkpoint's metadata names
    assert minilm_dir() / "model.safetensors" in files and minilm_dir() / "vocab.txt" in files
    assert all(f.is_file() for f in files)
    # a head given by --weights: its own towers; an unreadable one, the head alone (load says why)
    assert meta.local_files(str(fusion.checkpoint_path(name))) == files
    assert meta.local_files("~/h.safetensors") == [Path("~/h.safetensors").expanduser()]


def test_an_updated_tower_weights_package_changes_the_fusion_run_key(tmp_path, monkeypatch):
    """The towers are pip packages: upgrading one must re-run fusion models, not skip them."""
    from harness.models import encoders

    tower = tmp_path / "efficientnet-lite0.pth"
    shutil.copy(encoders.efficientnet_lite0_weights(), tower)
    monkeypatch.setattr(encoders, "efficientnet_lite0_weights", lambda: tower)
    meta, opts = MODELS.get("fusion-late-synth"), runner.RunOptions()
    before = runner.weights_content(meta, opts, TASKS.get("retrieval"))
    assert [tower.name, sha256_file(tower)] in before[0]["weights"]
    with tower.open("r+b") as f:  # another release of the package: same name, other bytes
        f.seek(-8, 2)
        f.write(b"\xff" * 8)
    assert runner.weights_content(meta, opts, TASKS.get("retrieval")) != before


def test_embedding_identity_names_weights_by_content_not_by_path():
    """A checkout and an installed wheel hold the same shipped checkpoint under other paths:
    one identity (so CI's wheel step shares the checkout's embeddings); the towers' digests are
    part of a fusion model's."""
    ckpt = {"id": "/checkout/w.safetensors", "sha256": "ab12",
            "components": {"image": {"id": "pkg:e.pth", "sha256": "cd34"}, "text": {"id": "pkg:m", "sha256": None}}}
    moved = {**ckpt, "id": "/venv/site-packages/harness/weights/w.safetensors"}
    assert _content_identity(ckpt) == _content_identity(moved) == {
        "checkpoint": None, "components": {"image": {"checkpoint": None, "sha256": "cd34"},
                                           "text": {"checkpoint": "pkg:m"}}}
    assert _content_identity({"id": "hf-hub:org/m", "sha256": None}) == {"checkpoint": "hf-hub:org/m"}


def test_safetensors_header_is_read_without_the_data(tmp_path):
    import torch
    from safetensors.torch import save_file

    from harness.models.weights import safetensors_header, safetensors_numel

    path = tmp_path / "t.safetensors"
    save_file({"a": torch.zeros(3, 4), "b": torch.zeros(5, dtype=torch.int64)}, str(path), metadata={"k": "v"})
    header = safetensors_header(path)
    assert header["__metadata__"] == {"k": "v"} and header["a"]["shape"] == [3, 4]
    assert safetensors_numel(header) == 17
    for bad, why in ((b"", "header length -1"), (b"\x00" * 8, "header length 0"),
                     ((10).to_bytes(8, "little") + b"{}", "truncated"),
                     ((4).to_bytes(8, "little") + b"nope", "not JSON"),
                     ((2).to_bytes(8, "little") + b"[]", "malformed")):
        path.write_bytes(bad)
        with pytest.raises(ValueError, match=why):
            safetensors_header(path)


def test_a_new_task_revision_is_rerun_not_taken_from_the_store(tmp_path, monkeypatch):
    """A task that changes what it computes from the same inputs (the probes' new solver) raises
    its revision: a stored result of the old method is not skipped into the new one."""
    opts = runner.RunOptions(batch_size=16, limit=16, num_workers=0, use_cache=False)
    spec = runner.RunSpec("tiny-clip-synth", "synthetic", "retrieval", "val", opts)
    results = tmp_path / "results"
    task = type(TASKS.get("retrieval"))
    assert task.revision == 0  # revision 0 adds nothing: keys made before revisions existed stay valid
    first = runner.run_one(spec, results)
    assert runner.run_one(spec, results).status == runner.RunStatus.SKIPPED
    monkeypatch.setattr(task, "revision", 1)
    changed = runner.run_one(spec, results)
    assert changed.status == runner.RunStatus.DONE and changed.record.run_key != first.record.run_key
    assert changed.record.metrics == first.record.metrics
    assert TASKS.get("linear_probe").revision >= 1 and TASKS.get("image_text_classification").revision >= 1
