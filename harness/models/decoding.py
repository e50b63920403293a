"""Autoregressive decoding over a next-token function, for captioners whose library offers
no working ``generate`` (open_clip CoCa under transformers 5, the embedded tiny captioner).

``logprobs(prefix)`` takes a (n, L) LongTensor of token ids (the start token first) and
returns (n, V) log-probabilities of the next token. Greedy and sampling run the batch
together, a row stopping at its end token; beam search keeps ``num_beams`` open prefixes per
row and returns the best finished one by summed log-probability / length (transformers'
default ``length_penalty=1``), or the best open one when none finished within the cap.
Returned rows are the generated ids, the end token included when it was produced.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.core.interfaces import GenerateOptions


def decode(logprobs: Callable, n: int, start: int, end: int, options: GenerateOptions, device="cpu") -> list[list[int]]:
    if options.num_beams > 1 and not options.do_sample:
        return [beam_search(lambda p, i=i: logprobs(p, i), start, end, options) for i in range(n)]
    return stepwise(lambda p: logprobs(p, None), n, start, end, options, device)


def stepwise(logprobs: Callable, n: int, start: int, end: int, options: GenerateOptions, device="cpu") -> list[list[int]]:
    """Greedy (argmax) or sampling, every row of the batch one token per step."""
    import torch

    text = torch.full((n, 1), start, dtype=torch.long, device=device)
    rows: list[list[int]] = [[] for _ in range(n)]
    live = torch.ones(n, dtype=torch.bool, device=device)
    for _ in range(options.max_new_tokens):
        logp = logprobs(text)
        nxt = torch.multinomial(logp.float().exp(), 1)[:, 0] if options.do_sample else logp.argmax(-1)
        for i in live.nonzero()[:, 0].tolist():
            rows[i].append(int(nxt[i]))
        live &= nxt != end
        text = torch.cat([text, nxt[:, None]], 1)
        if not live.any():
            break
    return rows


def beam_search(logprobs: Callable, start: int, end: int, options: GenerateOptions) -> list[int]:
    """One row: ``logprobs(prefixes)`` scores every open prefix of this row at once."""
    import torch

    k = options.num_beams
    beams: list[tuple[list[int], float]] = [([], 0.0)]
    done: list[tuple[list[int], float]] = []
    for _ in range(options.max_new_tokens):
        logp = logprobs(torch.tensor([[start, *b] for b, _ in beams]))
        top = logp.float().topk(min(k, logp.shape[-1]), dim=-1)
        cands = sorted(((b + [int(t)], s + float(v)) for (b, s), vs, ts in zip(beams, top.values, top.indices)
                        for v, t in zip(vs, ts)), key=lambda c: -c[1])
        beams = []
        for seq, score in cands:
            (done if seq[-1] == end else beams).append((seq, score))
            if len(beams) == k:
                break
        if len(done) >= k or not beams:
            break
    return max(done or beams, key=lambda c: c[1] / len(c[0]))[0]
