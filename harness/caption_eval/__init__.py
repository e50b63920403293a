"""Caption evaluation: COCO's caption metrics (pycocoevalcap) with and without Java.

Not :mod:`harness.caption_metrics`, which scores caption *selection* (an image, its caption and
foils). Here: :mod:`.tokenize` (the PTB tokenizer, Java and pure Python) and :mod:`.metrics`
(BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SPICE; corpus and per item, x100).
"""
