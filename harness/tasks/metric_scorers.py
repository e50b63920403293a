"""Caption metrics as scorers of judged (image, caption) pairs: ``--model metric:NAME`` in the
``human_agreement`` task, so a metric's Kendall tau against people sits beside the models'.

* ``metric:bleu1`` ... ``bleu4``, ``meteor``, ``rouge_l``, ``cider``, ``spice``
  (:class:`ReferenceMetric`): each pair's candidate caption against the query image's own
  captions (the candidate itself left out when it is one of them, CF's case), the COCO caption
  evaluation's way (:mod:`.metrics`); the corpus of CIDEr's document frequencies is the judged
  pairs, each once. No image is read, so these run on a Flickr8k copy with only its text files.
* ``metric:clip_s:JUDGE`` and ``metric:refclip_s:JUDGE`` (:class:`JudgeMetric`), any dual encoder
  of the registry as judge: CLIP-S = 2.5 * max(cos(image, "A photo depicts " + caption), 0) and
  RefCLIP-S = the harmonic mean of CLIP-S and max(max over references of cos(caption, ref), 0),
  the references carrying the same prefix (Hessel et al. 2021, eq. 1-2 and their code), through
  the embedding cache.

Protocol check (CLIPScore's ``flickr8k_example``, Hessel et al. 2021, Table 1): on the official
Flickr8k-Expert file these give tau-c BLEU-1 32.3, BLEU-4 30.8, ROUGE-L 32.3, METEOR 41.8,
CIDEr 43.9 (``tests/test_metric_agreement.py``). CLIPScore's code repeats each Expert pair once
per judgment in the CIDEr corpus; that changes only the idf of n-grams no reference holds and
gives the same tau-c there (43.89) as the pairs counted once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.core.errors import UserError
from harness.core.interfaces import ModelKind, ModelMeta
from harness.metrics.captioning import METRICS, evaluate_captions, metric_missing, resolve_tokenizer

METRIC_PREFIX = "metric:"
JUDGE_METRICS = ("clip_s", "refclip_s")
CLIP_S_WEIGHT = 2.5  # Hessel et al. 2021, eq. 1
PROMPT = "A photo depicts "  # CLIPScore's text prefix, on candidates and references alike
NAMES = {"bleu1": "BLEU-1", "bleu2": "BLEU-2", "bleu3": "BLEU-3", "bleu4": "BLEU-4", "meteor": "METEOR 1.5",
         "rouge_l": "ROUGE-L", "cider": "CIDEr-D", "spice": "SPICE", "clip_s": "CLIP-S", "refclip_s": "RefCLIP-S"}


class MetricSpecError(UserError):
    """A ``metric:NAME`` the registry cannot make (unknown metric, missing judge)."""


def parse(name: str) -> tuple[str, str | None]:
    """``metric:cider`` -> ("cider", None); ``metric:clip_s:tiny-clip-synth`` -> ("clip_s", "tiny-clip-synth").

    >>> parse("metric:refclip_s:open_clip:ViT-B-32/openai")
    ('refclip_s', 'open_clip:ViT-B-32/openai')
    """
    metric, _, judge = name[len(METRIC_PREFIX):].partition(":")
    known = (*METRICS, *JUDGE_METRICS)
    if metric not in known:
        raise MetricSpecError(f"{name}: unknown caption metric {metric!r}; known: {', '.join(known)}")
    if metric in JUDGE_METRICS and not judge:
        raise MetricSpecError(f"{name}: {metric} needs a judge, a dual encoder: metric:{metric}:MODEL "
                              f"(e.g. metric:{metric}:ViT-B-32/openai)")
    if metric not in JUDGE_METRICS and judge:
        raise MetricSpecError(f"{name}: {metric} is reference-based and takes no judge")
    return metric, judge or None


def pycocoevalcap_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pycocoevalcap")
    except PackageNotFoundError:
        return "not installed"


def metric_meta(name: str, judge: ModelMeta | None = None) -> ModelMeta:
    """The registry entry of ``metric:NAME`` (``judge``: the resolved judge of clip_s/refclip_s).
    The source names what can change the scores: pycocoevalcap's version and the tokenizer
    path taken here (Java or not), or the judge's source."""
    metric, judge_name = parse(name)
    if metric in JUDGE_METRICS:
        if judge is None or judge.kind not in (ModelKind.DUAL, ModelKind.BOTH):
            raise MetricSpecError(f"{name}: the judge must be a dual encoder, "
                                  f"{judge_name} is {judge.kind.value if judge else 'unknown'}")
        return ModelMeta(
            name=name, family="caption-metric", kind=ModelKind.METRIC,
            source=f"{metric} (w={CLIP_S_WEIGHT}, prefix {PROMPT.strip()!r}) judged by {judge.source}",
            loader=lambda options: JudgeMetric(name, metric, judge.name, judge.load(options)),
            params=judge.params, license=judge.license, offline=judge.offline, local_files=judge.local_files,
            description=f"{NAMES[metric]} (Hessel et al. 2021) with {judge.name} as judge")
    tokenizer = resolve_tokenizer("auto")
    return ModelMeta(
        name=name, family="caption-metric", kind=ModelKind.METRIC,
        source=f"pycocoevalcap {pycocoevalcap_version()}:{metric} (PTB tokenizer: {tokenizer})",
        loader=lambda options: ReferenceMetric(name, metric, tokenizer), license="BSD (pycocoevalcap)",
        offline=True, reads_images=False,
        description=f"{NAMES[metric]} against the image's reference captions, as the COCO caption evaluation")


def pair_references(data) -> tuple[list[str], list[list[str]]]:
    """Each judged pair's candidate and references: the query image's captions, less the
    candidate itself when it is one of them. An image with no other caption is an error."""
    if not data.references:
        raise UserError(f"{data.name}: no reference captions, so reference-based metrics cannot score it")
    cands, refs = [], []
    for p, (i, c) in enumerate(zip(data.pair_image, data.pair_caption)):
        own = data.pair_own_ref[p]
        r = [t for k, t in enumerate(data.references[i]) if k != own]
        if not r:
            raise UserError(f"{data.name}: query image {data.images.key(i)} has no reference caption "
                            "besides the judged one")
        cands.append(data.captions[c])
        refs.append(r)
    return cands, refs


@dataclass
class ReferenceMetric:
    """A reference-based caption metric as a pair scorer (no weights, no images)."""

    name: str
    metric: str
    tokenizer: str
    checkpoint: dict = field(default_factory=lambda: {"id": None, "sha256": None})

    def score_judged(self, data, opts) -> tuple[Any, tuple, dict]:
        """(per-pair scores x100, timing stages, record details) for a JudgmentData."""
        import torch

        from harness.core.measure import Stage

        why = metric_missing(self.metric, self.tokenizer)
        if why:
            raise UserError(f"{self.name}: {why}")
        with Stage("scoring", "cpu", warmup=0) as stage:
            cands, refs = pair_references(data)
            scores = evaluate_captions(cands, refs, (self.metric,), self.tokenizer)
            stage.add_items(len(cands))
        details = {"pair_score": f"{NAMES[self.metric]} against the query image's captions (x100)",
                   "caption_metric": self.metric, "tokenizer": scores.tokenizer,
                   "metric_corpus": "the judged pairs, each once", "metric_notes": list(scores.notes)}
        return torch.tensor(scores.per_item[self.metric], dtype=torch.float64), (stage,), details


@dataclass
class JudgeMetric:
    """CLIP-S / RefCLIP-S with a dual encoder as judge. ``model`` and ``checkpoint`` are the
    judge's, so the embedding cache is keyed by the judge's weights."""

    name: str
    metric: str
    judge_name: str
    judge: Any

    @property
    def checkpoint(self) -> dict:
        return getattr(self.judge, "checkpoint", None) or {}

    @property
    def model(self) -> Any:
        return getattr(self.judge, "model", None)

    def score_judged(self, data, opts) -> tuple[Any, tuple, dict]:
        from harness.core.measure import Stage
        from harness.tasks.encode import encode_images, encode_texts

        with Stage("image_encode", opts.device, opts.warmup_batches) as img_stage:
            image_emb = encode_images(self.judge, data.images, opts, img_stage)
        texts = [PROMPT + c for c in data.captions]
        ref_owner: list[tuple[int, int]] = []
        if self.metric == "refclip_s":
            if not data.references:
                raise UserError(f"{data.name}: no reference captions, so RefCLIP-S cannot score it")
            ref_owner = [(i, k) for i, refs in enumerate(data.references) for k in range(len(refs))]
            texts += [PROMPT + data.references[i][k] for i, k in ref_owner]
        with Stage("text_encode", opts.device, opts.warmup_batches) as txt_stage:
            text_emb = encode_texts(self.judge, texts, opts, txt_stage)
        with Stage("scoring", opts.device, warmup=0) as score_stage:
            scores = self._scores(image_emb, text_emb, data, ref_owner)
            score_stage.add_items(len(data.pair_image))
        how = (f"CLIP-S = {CLIP_S_WEIGHT} * max(cos, 0)" if self.metric == "clip_s" else
               "RefCLIP-S = harmonic mean of CLIP-S and max(max ref cos, 0)")
        details = {"pair_score": f"{how}, prompt {PROMPT.strip()!r}, judge {self.judge_name}",
                   "caption_metric": self.metric, "judge": self.judge_name}
        return scores.cpu().double(), (img_stage, txt_stage, score_stage), details

    def _scores(self, image_emb, text_emb, data, ref_owner):
        import torch

        dev = image_emb.device
        img = torch.as_tensor(data.pair_image, device=dev)
        cap = torch.as_tensor(data.pair_caption, device=dev)
        cand = text_emb[: len(data.captions)].float()
        clip = clip_s(image_emb[img].float(), cand[cap])
        if self.metric == "clip_s":
            return clip
        refs = text_emb[len(data.captions):].float()
        rows_of: dict[int, list[tuple[int, int]]] = {}
        for row, (owner, k) in enumerate(ref_owner):
            rows_of.setdefault(owner, []).append((row, k))
        best = torch.stack([_best_ref(cand[c], refs, rows_of, data, p) for p, c in enumerate(data.pair_caption)])
        return refclip_s(clip, best)


def _best_ref(cand_vec, refs, rows_of: dict, data, pair: int):
    """max cos of a candidate with its image's references (its own caption left out)."""
    import torch

    i, own = data.pair_image[pair], data.pair_own_ref[pair]
    rows = [row for row, k in rows_of.get(i, []) if k != own]
    if not rows:
        raise UserError(f"{data.name}: query image {data.images.key(i)} has no reference caption "
                        "besides the judged one")
    return (refs[torch.as_tensor(rows, device=refs.device)] @ cand_vec).max()


def clip_s(image_emb, text_emb):
    """CLIP-S = 2.5 * max(cos, 0) of aligned unit-norm rows.

    >>> import torch
    >>> clip_s(torch.tensor([[1., 0.], [0., 1.]]), torch.tensor([[.6, .8], [-1., 0.]])).tolist()
    [1.5, 0.0]
    """
    return CLIP_S_WEIGHT * (image_emb * text_emb).sum(-1).clamp(min=0)


def refclip_s(clip, best_ref_cos):
    """Harmonic mean of CLIP-S and max(best reference cosine, 0); 0 where either is 0.

    >>> import torch
    >>> refclip_s(torch.tensor([1.5, 2.0, 0.0]), torch.tensor([0.5, -0.2, 0.9])).tolist()
    [0.75, 0.0, 0.0]
    """
    import torch

    ref = best_ref_cos.clamp(min=0)
    total = clip + ref
    return torch.where(total > 0, 2 * clip * ref / total.clamp(min=1e-12), torch.zeros_like(total))


def _meta_for(name: str, resolve) -> ModelMeta:
    _, judge = parse(name)
    return metric_meta(name, resolve(judge) if judge else None)


def _register() -> None:
    from harness.models import register_prefix

    register_prefix(METRIC_PREFIX, _meta_for)


_register()
