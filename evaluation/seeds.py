"""Runs that differ only by seed are one group: mean ± std (ddof=1) over them, and the rule
"A beats B only if mean_A - mean_B > std_A + std_B" (otherwise: no significant difference).

What makes two runs "the same setup" is read from their saved, resolved run configs: every
setting except the seed and the bookkeeping below (output paths, loggers, progress bars, test
splits...) must be equal. A group's label is the backbone plus the settings that tell it apart
from the other groups of its backbone (e.g. `lstm window=1`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

# settings that do not change what is learned (or that name where it is written)
IGNORED_PREFIXES = (
    "seed",
    "paths.",
    "hydra.",
    "logger.",
    "extras.",
    "tags",
    "task_name",
    "ckpt_path",
    "train",
    "test",
    "threads",
    "optimized_metric",
    "callbacks.model_checkpoint.dirpath",
    "callbacks.rich_progress_bar",
    "callbacks.model_summary",
    "trainer.default_root_dir",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "data.test_splits",
    "data.eval_batch_size",
    "data.num_workers",
)
SPREAD_UNKNOWN = "1 seed: spread unknown"
NO_DIFFERENCE = "no significant difference"


def flatten(cfg, prefix: str = "") -> dict[str, object]:
    """{"a.b.c": value} of a nested config (lists as tuples, so values are hashable)."""
    out: dict[str, object] = {}
    for k, v in (cfg or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = tuple(_hashable(x) for x in v) if isinstance(v, (list, tuple)) else v
    return out


def _hashable(v):
    if isinstance(v, Mapping):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_hashable(x) for x in v)
    return v


def setup_of(cfg, exclude: tuple[str, ...] = ()) -> dict[str, object]:
    """The settings that define a run's setup: its flattened config minus seed and bookkeeping."""
    skip = IGNORED_PREFIXES + tuple(exclude)
    return {k: v for k, v in flatten(cfg).items() if not any(k == p or k.startswith(p) for p in skip)}


def short(key: str, keys: list[str]) -> str:
    """`data.window` -> `window` unless another key ends the same way."""
    last = key.rsplit(".", 1)[-1]
    return last if sum(k.rsplit(".", 1)[-1] == last for k in keys) == 1 else key


def fmt_value(v) -> str:
    if isinstance(v, tuple):
        return "[" + ",".join(fmt_value(x) for x in v) + "]"
    return str(v)


def group_setups(items: list[dict], exclude: tuple[str, ...] = ()) -> list[dict]:
    """Group items ({"task", "backbone", "config": resolved run config, ...}) whose setups are
    equal. Returns [{"key", "label", "task", "backbone", "settings" (what tells it apart),
    "members": [item indices]}] in order of first appearance."""
    setups = [setup_of(it["config"], exclude) for it in items]
    groups: dict[tuple, dict] = {}
    for i, (it, s) in enumerate(zip(items, setups, strict=False)):
        key = (it["task"], tuple(sorted((k, repr(v)) for k, v in s.items())))
        groups.setdefault(key, {"key": key, "task": it["task"], "backbone": it["backbone"], "members": []})[
            "members"
        ].append(i)
    out = list(groups.values())
    for g in out:
        same = [h for h in out if h["task"] == g["task"] and h["backbone"] == g["backbone"]]
        mine = setups[g["members"][0]]
        varying = sorted(
            {k for h in same for k, v in setups[h["members"][0]].items() if repr(mine.get(k)) != repr(v)}
            | {k for h in same for k in mine if k not in setups[h["members"][0]]}
        )
        g["settings"] = {k: mine.get(k) for k in varying}
        g["label"] = " ".join([g["backbone"], *(f"{short(k, varying)}={fmt_value(mine.get(k))}" for k in varying)])
    return out


def mean_std(values: list[float]) -> dict:
    """{"mean", "std" (sample std, ddof=1; None for one value), "n"}; None values are left out."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(vals)
    if not n:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "n": n}


def beats(a: dict, b: dict) -> bool | None:
    """a beats b by more than the spread (True / False); None when either spread is unknown."""
    if a["mean"] is None or b["mean"] is None:
        return None
    if a["std"] is None or b["std"] is None:
        return None
    return a["mean"] - b["mean"] > a["std"] + b["std"]


def compare(a: dict, b: dict) -> str:
    """ "beats" or "below" (by more than the sum of the spreads either way), else "no significant
    difference"; "1 seed: spread unknown" when either spread is unknown."""
    won = beats(a, b)
    if won is None:
        return SPREAD_UNKNOWN
    return "beats" if won else "below" if beats(b, a) else NO_DIFFERENCE


def fmt_ms(s: dict | None, digits: int = 4) -> str:
    """`0.8512 ± 0.0040 (n=3)`; one value: `0.8512 (n=1)`; none: `–`."""
    if not s or s.get("mean") is None:
        return "–"
    if s.get("std") is None:
        return f"{s['mean']:.{digits}f} (n={s['n']})"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f} (n={s['n']})"


def _branches(per_seed: list[dict]) -> dict:
    """evaluation.branches scores of one split over seeds: the samples are the seeds' (the same
    rows), the accuracy becomes mean ± std."""
    names = list(dict.fromkeys(b for scores in per_seed for b in scores))
    first = {b: next(s[b] for s in per_seed if b in s) for b in names}
    return {b: {**first[b], "acc": mean_std([s.get(b, {}).get("acc") for s in per_seed])} for b in names}


def aggregate(models: list[dict], groups: list[dict]) -> list[dict]:
    """Per group: mean ± std over its seeds of every metric on every split (model and baselines)
    and on the validation rows; the cost of its first member (the same for every seed)."""
    out = []
    for g in groups:
        ms = [models[i] for i in g["members"]]
        splits = list(dict.fromkeys(s for m in ms for s in m["splits"]))
        metric_names = [k for k in ms[0].get("metric_names", []) or []] or sorted(
            {k for m in ms for s in m["splits"].values() for k, v in s.items() if isinstance(v, (int, float))}
        )

        def agg(get, ms=ms, metric_names=metric_names) -> dict:
            return {k: mean_std([get(m, k) for m in ms]) for k in metric_names}

        entry = {
            "label": g["label"],
            "task": g["task"],
            "backbone": g["backbone"],
            "settings": g["settings"],
            "members": [m["label"] for m in ms],
            "seeds": [m.get("seed") for m in ms],
            "n": len(ms),
            "macs": ms[0].get("macs"),
            "window": ms[0].get("window"),
            "params": ms[0].get("params"),
            "primary": ms[0].get("primary"),
            "ckpt_paths": [m.get("ckpt_path") for m in ms],
            "latency": ms[0].get("latency"),
            "metric_names": metric_names,
            "validation": agg(lambda m, k: (m.get("validation") or {}).get(k)),
            "splits": {s: agg(lambda m, k, s=s: m["splits"].get(s, {}).get(k)) for s in splits},
            "baselines": {},
        }
        for s in splits:
            names = list(dict.fromkeys(b for m in ms for b in (m.get("baselines") or {}).get(s, {})))
            entry["baselines"][s] = {
                b: agg(lambda m, k, s=s, b=b: (m.get("baselines") or {}).get(s, {}).get(b, {}).get(k)) for b in names
            }
        if any("branches" in m for m in ms):  # can_migrate: accuracy per branch of the kernel's rule
            entry["branches"] = {s: _branches([m.get("branches", {}).get(s, {}) for m in ms]) for s in splits}
        out.append(entry)
    return out
