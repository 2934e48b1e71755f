"""Integer model vs float model on data: decision agreement, primary metric, saturation counts.

Two ways to run the integer model on a split:
  * window mode: each window from reset, exactly the float model's view (reset + L steps);
  * stream mode: each stream of steps once, state carried from step to step, as the kernel
    runs it; it differs from window mode where the window has padding (stream starts) and,
    for an LSTM, everywhere (its state remembers more than the window).
A candidate scorer (Split.decisions) has window mode only, and its task metric is top-1 of the
argmax over each decision's candidates (`decision_metrics`).
"""

from __future__ import annotations

import numpy as np

from export.intref import IntRef, Stream
from export.parity import decisions, torch_logits
from export.quantize import QModel
from export.source import Decisions, Source, Split


def primary_metric(name: str, dec: np.ndarray, y: np.ndarray) -> float:
    """bal_acc (mean recall of the classes present) or top1 / acc (share of exact hits)."""
    y = np.asarray(y).astype(np.int64)
    if name == "bal_acc":
        recalls = [float((dec[y == c] == c).mean()) for c in (0, 1) if (y == c).any()]
        return float(np.mean(recalls)) if recalls else 0.0
    if name in ("top1", "acc"):
        return float((dec == y).mean()) if len(y) else 0.0
    raise ValueError(f"no integer evaluation for metric {name!r} (known: bal_acc, top1, acc)")


def chosen_slots(scores: np.ndarray, d: Decisions) -> np.ndarray:
    """(D,) the slot of each decision's highest score (the first on a tie, as np.argmax and the
    harness's decide); -1 for a decision without candidates."""
    out = np.full(len(d.y), -1, np.int64)
    if len(scores):
        order = np.lexsort((d.slot, -np.asarray(scores, np.float64), d.owner))  # by decision, best first
        first = order[np.r_[True, d.owner[order][1:] != d.owner[order][:-1]]]
        out[d.owner[first]] = d.slot[first]
    return out


def decision_metrics(float_scores: np.ndarray, int_scores: np.ndarray, d: Decisions) -> dict:
    """Float vs integer scorer over whole decisions: argmax agreement (decisions with a choice,
    two candidates or more) and top-1 of each (every decision, a miss or an empty set wrong)."""
    cf, ci = chosen_slots(float_scores, d), chosen_slots(int_scores, d)
    multi = np.bincount(d.owner, minlength=len(d.y)) >= 2
    tf, ti = float((cf == d.y).mean()) if len(d.y) else 0.0, float((ci == d.y).mean()) if len(d.y) else 0.0
    return {
        "decisions": int(len(d.y)),
        "decisions_with_choice": int(multi.sum()),
        "argmax_agreement": float((cf[multi] == ci[multi]).mean()) if multi.any() else 1.0,
        "top1_float": tf,
        "top1_int": ti,
        "top1_drop_points": 100 * (tf - ti),
    }


def window_logits(q: QModel, ref: IntRef, split: Split, batch: int = 4096) -> np.ndarray:
    """Integer outputs (dequantized) of every window, each evaluated from reset."""
    out = []
    for x, tok in split.batches(batch):
        out.append(ref.outputs_full(q.quantize_input(x), tok)[:, -1])
    return q.dequantize_output(np.concatenate(out)) if out else np.zeros((0, q.graph.n_out))


def stream_logits(q: QModel, ref: IntRef, split: Split, group: int = 64) -> np.ndarray | None:
    """Integer outputs at each window's last step when every stream is run step by step."""
    if split.start is None or split.rows_x is None:
        return None
    bounds = np.union1d(np.flatnonzero(split.start), [0, len(split.rows_x)])
    lengths = np.diff(bounds)
    out = np.zeros((len(split.rows_x), q.graph.n_out), np.int64)
    order = np.argsort(lengths, kind="stable")  # similar lengths together: little padding
    for g0 in range(0, len(order), group):
        ids = order[g0 : g0 + group]
        t_max = int(lengths[ids].max())
        x = np.zeros((len(ids), t_max, q.graph.n_num), np.int64)
        tok = np.zeros((len(ids), t_max), np.int64) if q.graph.tokens else None
        for k, s in enumerate(ids):
            a, b = bounds[s], bounds[s + 1]
            x[k, : b - a] = q.quantize_input(split.rows_x[a:b])
            if tok is not None:
                tok[k, : b - a] = split.rows_tok[a:b]
        y = Stream(ref, len(ids)).run(x, tok)  # steps after a stream's end are padding, ignored
        for k, s in enumerate(ids):
            out[bounds[s] : bounds[s + 1]] = y[k, : lengths[s]]
    return q.dequantize_output(out[split.row])


def compare(q: QModel, src: Source, split: Split) -> dict:
    """Float vs integer on one split: agreement and primary metric, window and stream mode."""
    ref = IntRef(q)
    fl = torch_logits(src.net, split.x, split.tok if q.graph.tokens else None)
    d_float = decisions(fl, src.unknown_token)
    res = {"windows": len(split)}
    modes = {"window": window_logits(q, ref, split)}
    counts = dict(ref.counts)
    if q.graph.is_sequence_model():
        sl = stream_logits(q, IntRef(q), split)
        if sl is not None:
            modes["stream"] = sl
    for mode, il in modes.items():
        d_int = decisions(il, src.unknown_token)
        r = {
            "decision_agreement": float((d_int == d_float).mean()) if len(d_int) else 1.0,
            "max_abs_logit_diff": float(np.abs(il - fl).max()) if len(il) else 0.0,
        }
        if split.decisions is not None:
            r.update(decision_metrics(fl[:, 0], il[:, 0], split.decisions))
        if split.y is not None:
            mf, mi = primary_metric(src.metric, d_float, split.y), primary_metric(src.metric, d_int, split.y)
            r.update({f"{src.metric}_float": mf, f"{src.metric}_int": mi, f"{src.metric}_drop_points": 100 * (mf - mi)})
        res[mode] = r
    res["saturation"] = counts
    return res
