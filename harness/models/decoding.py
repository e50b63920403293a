"""Autoregressive decoding over a next-token function, for captioners whose library offers
no working ``generate`` (open_clip CoCa under transformers 5, the embedded tiny captioner).

``logprobs(prefix, rows)`` takes a (m, L) LongTensor of token ids (the start token first) and
returns (m, V) log-probabilities of the next token; ``rows`` is None when prefix i belongs to
batch row i, else a (m,) LongTensor naming each prefix's batch row. Greedy and sampling run the
batch together, a row stopping at its end token; beam search keeps ``num_beams`` open prefixes
per row (all rows scored in one call per step) and returns the best finished one by summed
log-probability / length (transformers' default ``length_penalty=1``), or the best open one
when none finished within the cap.
Returned rows are the generated ids, the end token included when it was produced.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.core.interfaces import GenerateOptions


def decode(logprobs: Callable, n: int, start: int, end: int, options: GenerateOptions, device="cpu") -> list[list[int]]:
    if options.num_beams > 1 and not options.do_sample:
        return beam_search(logprobs, n, start, end, options, device)
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


def beam_search(logprobs: Callable, n: int, start: int, end: int, options: GenerateOptions,
                device="cpu") -> list[list[int]]:
    """Every row's beam search at once: each step, one ``logprobs(prefixes, rows)`` call scores
    the open prefixes of all rows still searching (``rows[i]``: the batch row prefix i extends);
    each row keeps its own beams and finished hypotheses and stops on its own (one call per row
    and step made the embedded captioner's beam-3 decoding ~10x slower on a CPU)."""
    import torch

    k = options.num_beams
    beams: list[list[tuple[list[int], float]]] = [[([], 0.0)] for _ in range(n)]
    done: list[list[tuple[list[int], float]]] = [[] for _ in range(n)]
    live = list(range(n))
    for _ in range(options.max_new_tokens):
        if not live:
            break
        prefixes = torch.tensor([[start, *b] for r in live for b, _ in beams[r]], device=device)
        owners = torch.tensor([r for r in live for _ in beams[r]], device=device)
        logp = logprobs(prefixes, owners).float()
        top = logp.topk(min(k, logp.shape[-1]), dim=-1)
        values, tokens, at, searching = top.values.tolist(), top.indices.tolist(), 0, []
        for r in live:
            mine = slice(at, at + len(beams[r]))
            at += len(beams[r])
            _step(beams[r], done[r], values[mine], tokens[mine], end, k)
            if len(done[r]) < k and beams[r]:
                searching.append(r)
        live = searching
    return [max(done[r] or beams[r], key=lambda c: c[1] / len(c[0]))[0] for r in range(n)]


def _step(beams: list, done: list, values: list, tokens: list, end: int, k: int) -> None:
    """One step of one row, in place: every beam's top-k continuations, best first; the first
    k open ones are the new beams, finished ones go to ``done``."""
    cands = sorted(((b + [t], s + v) for (b, s), vs, ts in zip(beams, values, tokens) for v, t in zip(vs, ts)),
                   key=lambda c: -c[1])
    beams.clear()
    for seq, score in cands:
        (done if seq[-1] == end else beams).append((seq, score))
        if len(beams) == k:
            break
