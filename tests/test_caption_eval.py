"""COCO caption metrics (harness.metrics.captioning) against pycocoevalcap run as its users run it.

The Java metrics (PTB tokenizer, METEOR) run once, on a small seeded corpus, in the
session-scoped fixture ``parity``; without Java those tests skip and say why.
"""

from __future__ import annotations

import random
import shutil
import warnings

import pytest

pytest.importorskip("pycocoevalcap.bleu.bleu", reason="pycocoevalcap is not installed")

from conftest import FLICKR8K  # noqa: E402

from harness.metrics import captioning as cm  # noqa: E402
from harness.metrics import ptb_tokenize as ct  # noqa: E402

JAVA_WHY = ct.java_missing()
needs_java = pytest.mark.skipif(JAVA_WHY is not None, reason=f"Java metrics: {JAVA_WHY}")


def java_test(fn):
    """Runs the jar (a JVM start each, METEOR's 10-30 s load once per session): slow, skips without Java."""
    return pytest.mark.slow(needs_java(fn))
FLICKR8K_TOKENS = FLICKR8K / "text" / "Flickr8k.token.txt"
PYTHON_METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider")
JAVA_METRICS = (*PYTHON_METRICS[:4], "meteor", "rouge_l", "cider")

# caption pieces: words, contractions, quotes, brackets, dashes, numbers, abbreviations, Unicode
PIECES = ["a", "A", "man", "dog", "dogs", "the", "red", "ball", "runs", "running", "on", "grass", "in", "water",
          "two", "children", "play", "with", "white", "black", "is", "are", "jumping", "over", "fence", "near",
          "dog's", "doesn't", "can't", "won't", "they're", "'s", "(", ")", "[", "]", ",", ".", "!", "?", ";", ":",
          '"', "'", "--", "-", "...", "\u2026", "\u2014", "caf\u00e9", "na\u00efve", "\u00dcn\u00efcode", "\u65e5\u672c",
          "\u201c", "\u201d", "\u2019", "3.5", "10,000", "$5", "50%", "t-shirt", "Mr.", "St.", "e.g.", "U.S.",
          "4x4", "1950s", "3rd", "o'clock", "end.", "white.", "ok!", "what?", "yes,", "red-and-white", "#a", "&",
          "black/white", "\U0001f436"]


def seeded_corpus(n_items: int = 40, seed: int = 0) -> tuple[list[str], list]:
    """Candidates and references from a seeded mix of pieces; an empty candidate, a reference
    list given as one string, an empty reference string and varying reference counts."""
    rng = random.Random(seed)
    sentence = lambda lo, hi: " ".join(rng.choice(PIECES) for _ in range(rng.randint(lo, hi)))  # noqa: E731
    cands = [sentence(1, 12) for _ in range(n_items)]
    refs: list = [[sentence(3, 14) for _ in range(rng.randint(1, 5))] for _ in range(n_items)]
    cands[3] = ""                                  # an empty candidate
    refs[5] = sentence(3, 10)                      # one reference given as a plain string
    refs[7] = [*refs[7], ""]                       # an empty reference among others
    cands[9] = refs[9][0] if isinstance(refs[9], list) else refs[9]  # an exact match
    return cands, refs


def pycocoevalcap_reference(cands: list[str], refs: list, metrics: tuple[str, ...]):
    """pycocoevalcap as its users run it: PTBTokenizer, then each scorer; x100."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    refs = [[r] if isinstance(r, str) else r for r in refs]
    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": r} for r in rs] for i, rs in enumerate(refs)})
    res = tok.tokenize({i: [{"caption": c}] for i, c in enumerate(cands)})
    corpus, each = {}, {}
    total, per = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        corpus[f"bleu{n + 1}"], each[f"bleu{n + 1}"] = total[n], per[n]
    for key, scorer in (("rouge_l", Rouge()), ("cider", Cider())):
        corpus[key], each[key] = scorer.compute_score(gts, res)
    if "meteor" in metrics:  # pycocoevalcap's Meteor, the process's one JVM (loading it takes 10-30 s)
        assert isinstance(cm.meteor_scorer(), Meteor)
        corpus["meteor"], each["meteor"] = cm.meteor_scorer().compute_score(gts, res)
    return ({k: 100 * float(corpus[k]) for k in metrics},
            {k: [100 * float(v) for v in each[k]] for k in metrics})


@pytest.fixture(scope="session")
def parity():
    """Ours (Java and Java-free paths) and pycocoevalcap's, on one seeded corpus: Java runs here only."""
    if JAVA_WHY:
        pytest.skip(f"Java metrics: {JAVA_WHY}")
    cands, refs = seeded_corpus()
    one = ([cands[0]], [refs[0]])  # a one-image corpus (CIDEr-D is 0 there, in pycocoevalcap too)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"seeded": {"reference": pycocoevalcap_reference(cands, refs, JAVA_METRICS),
                           "java": cm.evaluate_captions(cands, refs, JAVA_METRICS, tokenizer="java"),
                           "python": cm.evaluate_captions(cands, refs, PYTHON_METRICS, tokenizer="python")},
                "one": {"reference": pycocoevalcap_reference(*one, JAVA_METRICS),
                        "java": cm.evaluate_captions(*one, JAVA_METRICS, tokenizer="java"),
                        "python": cm.evaluate_captions(*one, PYTHON_METRICS, tokenizer="python")}}


@java_test
@pytest.mark.parametrize("corpus", ["seeded", "one"])
@pytest.mark.parametrize("path", ["java", "python"])
def test_every_metric_equals_pycocoevalcap_corpus_and_per_image(parity, corpus, path):
    ref_corpus, ref_each = parity[corpus]["reference"]
    ours = parity[corpus][path]
    assert ours.tokenizer == f"ptb-{path}"
    assert set(ours.corpus) == set(JAVA_METRICS if path == "java" else PYTHON_METRICS)
    for key in ours.corpus:
        assert ours.corpus[key] == pytest.approx(ref_corpus[key], abs=1e-6), key
        assert len(ours.per_item[key]) == (40 if corpus == "seeded" else 1)
        assert ours.per_item[key] == pytest.approx(ref_each[key], abs=1e-6), key
    if corpus == "one":
        assert ours.corpus["cider"] == 0.0 and ours.notes == (cm.ONE_ITEM_CIDER,)
        return
    assert 0 < ours.corpus["cider"] and 0 < ours.corpus["bleu1"] < 100  # a real corpus, not all zeros
    assert ours.per_item["cider"][9] > ours.corpus["cider"]  # the exact match scores above the mean
    assert all(v[3] == 0.0 for v in ours.per_item.values())  # the empty candidate scores 0 everywhere
    assert ours.notes == ()


@java_test
def test_python_tokenizer_equals_the_jar_on_seeded_captions():
    rng = random.Random(1)
    texts = [" ".join(rng.choice(PIECES) for _ in range(rng.randint(0, 14))) for _ in range(1500)]
    texts += ["'Tis 'em 'twas gonna gimme wanna cannot lemme", "A S.C.U.B.A. diver in Washington D.C.",
              "a slip 'n' slide , rock'n'roll", "Dale Earnhardt , Jr. , display at 3rd St ."]
    assert ct.ptb_tokenize_python(texts) == ct.ptb_tokenize_java(texts)


@java_test
@pytest.mark.skipif(not FLICKR8K_TOKENS.is_file(), reason=f"Flickr8k token file not found at {FLICKR8K_TOKENS}")
def test_python_tokenizer_equals_the_jar_on_every_flickr8k_caption():
    caps = [ln.split("\t", 1)[1] for ln in FLICKR8K_TOKENS.read_text(encoding="utf-8").splitlines() if "\t" in ln]
    assert len(caps) == 40460
    java, python = ct.ptb_tokenize_java(caps), ct.ptb_tokenize_python(caps)
    differ = [(c, j, p) for c, j, p in zip(caps, java, python) if j != p]
    assert not differ, differ[:3]


@java_test
def test_java_tokenizer_keeps_one_line_per_caption():
    """A line break inside a caption would shift every later caption in pycocoevalcap."""
    assert ct.ptb_tokenize_java(["A dog\rruns .", "", "two\u2028cats!", "The end"]) == \
        ["a dog runs", "", "two cats", "the end"]


def test_tokenizers_drop_pycocoevalcap_punctuation_but_keep_lowercased_brackets():
    assert ct.ptb_tokenize_python(['He said "Hi!" (twice) -- ok...']) == ["he said hi -lrb- twice -rrb- ok"]
    assert ct.drop_punctuation("a , b -LRB- -lrb- c .") == "a b -lrb- c"


def test_stringified_reference_list_is_refused_not_scored():
    with pytest.raises(cm.CaptionInputError, match=r"item 1 .*one string holding a list"):
        cm.evaluate_captions(["a dog", "a cat"], [["a dog"], "['a cat', 'the cat']"], ("bleu1",), "python")
    # a caption that merely starts with a bracket is one reference
    assert cm.check_references(["[sic] a cat"]) == [["[sic] a cat"]]


@pytest.mark.parametrize("cands, refs, match", [
    (["a dog"], [[]], "item 0 has no reference"),
    (["a dog", None], [["a"], ["b"]], "candidate of item 1 is NoneType"),
    (["a dog"], [["a"], ["b"]], "1 candidates but 2 reference lists"),
    ([], [], "no captions to score"),
    ("a dog", [["a dog"]], "not one string"),
    (["a dog"], [["a", 3]], "item 0: a reference is int"),
])
def test_bad_input_is_one_clear_error(cands, refs, match):
    with pytest.raises(cm.CaptionInputError, match=match):
        cm.evaluate_captions(cands, refs, ("bleu1",), "python")


def test_unknown_metric_and_tokenizer_are_named():
    with pytest.raises(cm.CaptionInputError, match="unknown caption metric.*blue"):
        cm.evaluate_captions(["a"], [["a"]], ("blue",), "python")
    with pytest.raises(cm.CaptionInputError, match="tokenizer must be one of"):
        cm.evaluate_captions(["a"], [["a"]], ("bleu1",), "nltk")


def test_one_item_corpus_is_scored_as_pycocoevalcap_and_warns_about_cider():
    from pycocoevalcap.bleu.bleu import Bleu

    with pytest.warns(UserWarning, match="one-item corpus"):
        s = cm.evaluate_captions(["a dog runs"], [["a dog runs fast", "a dog"]], PYTHON_METRICS, "python")
    assert s.per_item["cider"] == [0.0] and s.corpus["cider"] == 0.0  # log(1/1) idf: pycocoevalcap's 0
    assert s.notes == (cm.ONE_ITEM_CIDER,)
    total, _ = Bleu(4).compute_score({0: ["a dog runs fast", "a dog"]}, {0: ["a dog runs"]}, verbose=0)
    assert s.corpus["bleu1"] == pytest.approx(100 * total[0], abs=1e-9)
    assert s.corpus["bleu1"] == pytest.approx(100 * 1.0, abs=1e-4)  # 3/3 unigrams, closest ref length 2 < 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # two items: no warning
        cm.evaluate_captions(["a", "b"], [["a"], ["b"]], ("cider",), "python")


def test_empty_candidates_score_zero_without_java():
    s = cm.evaluate_captions(["", "a cat sits"], [["a dog"], ["a cat sits"]], PYTHON_METRICS, "python")
    assert all(v[0] == 0.0 for v in s.per_item.values())
    assert s.per_item["bleu1"][1] == pytest.approx(100.0, abs=1e-4)


def test_unicode_captions_score_on_the_java_free_path():
    s = cm.evaluate_captions(["un café naïve à Zürich"], [["un café naïve à Zürich", "日本 の 犬"]],
                             ("bleu4", "rouge_l"), "python")
    assert s.per_item["bleu4"][0] == pytest.approx(100.0, abs=1e-4)
    assert s.per_item["rouge_l"][0] == pytest.approx(100.0, abs=1e-9)


def test_without_java_auto_is_the_java_free_path_and_meteor_says_why(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    assert "default-jre-headless" in ct.java_missing()
    assert cm.resolve_tokenizer("auto") == "python"
    s = cm.evaluate_captions(["a dog"], [["a dog"]], ("bleu1",), "auto")
    assert s.tokenizer == "ptb-python"
    with pytest.raises(cm.MetricUnavailableError, match="meteor needs Java: no `java` on PATH"):
        cm.evaluate_captions(["a dog"], [["a dog"]], ("meteor",), "auto")
    with pytest.raises(ct.JavaUnavailableError, match="no `java` on PATH"):
        ct.ptb_tokenize_java(["a"])


def test_spice_without_its_stanford_models_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setattr(ct, "pycocoevalcap_dir", lambda: tmp_path)
    monkeypatch.setattr(cm, "pycocoevalcap_dir", lambda: tmp_path)
    monkeypatch.setattr(cm, "java_missing", lambda: None)
    why = cm.spice_missing()
    assert why.startswith("SPICE needs Stanford CoreNLP 3.6.0 models") and "stanford-corenlp-3.6.0-models.jar" in why
    assert "\n" not in why
    with pytest.raises(cm.MetricUnavailableError, match="SPICE needs Stanford CoreNLP"):
        cm.evaluate_captions(["a"], [["a"]], ("spice",), "python")
    lib = tmp_path / "spice" / "lib"
    lib.mkdir(parents=True)
    for jar in cm.SPICE_JARS:
        (lib / jar).write_bytes(b"")
    assert cm.spice_missing() is None


