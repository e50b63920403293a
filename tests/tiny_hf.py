"""Tiny random-initialised transformers models (CLIP, SigLIP, ALIGN, BLIP, ViLT) saved with
``save_pretrained`` -- model, tokenizer and image processor -- for offline adapter tests.

Tokenizers are built here from tiny vocabularies (no download): WordPiece for the BERT-style
ones (ALIGN, BLIP, ViLT), a byte-level BPE with CLIP's layout for CLIP, and a fast
word-level tokenizer standing in for SigLIP's sentencepiece model (appends ``</s>`` like it).
"""

from __future__ import annotations

from pathlib import Path

WORDS = ["a", "red", "circle", "two", "green", "triangles", "in", "row", "blue", "square", "the", "of",
         "to", "left", "yellow", "diamond", "big", "purple", "at", "top", "an", "word", "unseen"]
BERT_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TINY = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4}


def bert_tokenizer(extra: tuple[str, ...] = ()):
    from transformers import BertTokenizer

    vocab = BERT_SPECIAL + WORDS + ["##s", ":", "##e", "z", "##b", "##r", "##a"] + list(extra)
    return BertTokenizer(vocab={t: i for i, t in enumerate(vocab)})


def clip_tokenizer():
    """Byte-level BPE laid out like CLIP's: 256 byte symbols, the same with ``</w>``, a few
    merges, then start/end-of-text last (so end-of-text has the largest id)."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols]
    merges = [("r", "e"), ("re", "d</w>"), ("c", "i"), ("ci", "r"), ("a", "n")]
    vocab += ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges)


def siglip_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = ["<pad>", "</s>", "<unk>"] + WORDS
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="</s>", pad_token="</s>", unk_token="<unk>",
                                   model_max_length=64)


def _save(path: Path, model, tokenizer, processor) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def make_clip(path: Path) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tok = clip_tokenizer()
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    cfg = CLIPConfig(projection_dim=24,
                     text_config=dict(vocab_size=len(tok), max_position_embeddings=77, bos_token_id=eos - 1,
                                      eos_token_id=eos, pad_token_id=eos, **TINY),
                     vision_config=dict(image_size=32, patch_size=8, **TINY))
    torch.manual_seed(0)
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return _save(path, CLIPModel(cfg), tok, proc)


def make_siglip(path: Path) -> Path:
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    tok = siglip_tokenizer()
    cfg = SiglipConfig(text_config=dict(vocab_size=len(tok), max_position_embeddings=64, pad_token_id=1,
                                        bos_token_id=1, eos_token_id=1, **TINY),
                       vision_config=dict(image_size=32, patch_size=8, **TINY))
    torch.manual_seed(0)
    return _save(path, SiglipModel(cfg), tok, SiglipImageProcessor(size={"height": 32, "width": 32}))


def make_align(path: Path) -> Path:
    import torch
    from transformers import AlignConfig, AlignModel, EfficientNetImageProcessor

    tok = bert_tokenizer()
    vision = {"image_size": 32, "hidden_dim": 64, "width_coefficient": 0.1, "depth_coefficient": 0.1,
                  "num_hidden_layers": 4}
    # projection_dim = the EfficientNet's last block width (round_filters(320 * 0.1) = 32)
    cfg = AlignConfig(projection_dim=32, text_config=dict(vocab_size=len(tok), **TINY), vision_config=vision)
    torch.manual_seed(0)
    model = AlignModel(cfg)
    for module in model.vision_model.modules():  # std-0.02 convs shrink activations to ~1e-30
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight)
    proc = EfficientNetImageProcessor(size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32},
                                      do_center_crop=True, rescale_offset=True, include_top=False)
    return _save(path, model, tok, proc)


def make_blip(path: Path) -> Path:
    import torch
    from transformers import BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor

    tok = bert_tokenizer(extra=("[DEC]", "[ENC]"))
    cfg = BlipConfig(image_text_hidden_size=16,
                     text_config=dict(vocab_size=len(tok), encoder_hidden_size=32, bos_token_id=len(tok) - 2,
                                      pad_token_id=0, sep_token_id=3, **TINY),
                     # BlipVisionConfig's default initializer_range is 1e-10: all images would look alike
                     vision_config=dict(image_size=32, patch_size=8, initializer_range=0.02, **TINY))
    torch.manual_seed(0)
    return _save(path, BlipForImageTextRetrieval(cfg), tok, BlipImageProcessor(size={"height": 32, "width": 32}))


def make_vilt(path: Path) -> Path:
    import torch
    from transformers import (
        ViltConfig,
        ViltForImageAndTextRetrieval,
        ViltImageProcessor,
    )

    tok = bert_tokenizer()
    cfg = ViltConfig(vocab_size=len(tok), image_size=64, patch_size=16, max_position_embeddings=40, **TINY)
    torch.manual_seed(0)
    proc = ViltImageProcessor(size={"shortest_edge": 64}, size_divisor=16)
    return _save(path, ViltForImageAndTextRetrieval(cfg), tok, proc)


def make_all(root: Path) -> dict[str, Path]:
    return {family: make(root / family) for family, make in MAKERS.items()}


MAKERS = {"clip": make_clip, "siglip": make_siglip, "align": make_align, "blip": make_blip, "vilt": make_vilt}

