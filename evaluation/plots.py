"""PNG figures of an evaluation (matplotlib, Agg backend: no display needed).

All functions read the `models` list of metrics.json (see report.py) and write one file each,
atomically; they return the path written, or None when there is nothing to draw.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from plumbing.atomic import atomic_path  # noqa: E402


def save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def tasks_of(models: list[dict]) -> list[str]:
    return list(dict.fromkeys(m["task"] for m in models))


def baseline_rows(models: list[dict], split: str) -> dict[str, dict]:
    """{baseline label: scores} on `split` for one task's models, each distinct baseline once;
    a baseline that differs between models (other input features) is labelled with each model."""
    found: dict[str, list[tuple[str, dict]]] = {}
    for m in models:
        for name, s in m.get("baselines", {}).get(split, {}).items():
            if all(s != seen for _, seen in found.get(name, [])):
                found.setdefault(name, []).append((m["label"], s))
    out: dict[str, dict] = {}
    for name, variants in found.items():
        for label, s in variants:
            out[f"baseline/{name}" if len(variants) == 1 else f"baseline/{name} ({label})"] = s
    return out


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both lower latency (x) and higher metric (y)."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def accuracy_latency(
    models: list[dict], out: Path, split: str, engine: str, budget_us: float | None = None
) -> Path | None:
    tasks = tasks_of(models)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.2), squeeze=False)
    drawn = False
    for ax, task in zip(axes[0], tasks, strict=False):
        ms = [m for m in models if m["task"] == task and split in m["splits"]]
        pts, labels = [], []
        for m in ms:
            lat = (m.get("latency") or {}).get(engine, {}).get("p99_us")
            if lat is not None:
                pts.append((lat, m["splits"][split][m["primary"]]))
                labels.append(m["label"])
        metric = ms[0]["primary"] if ms else ""
        if pts:
            drawn = True
            front = pareto_front(pts)
            xs, ys = np.array(pts).T
            ax.scatter(xs, ys, s=40, facecolors="none", edgecolors="tab:blue", label="model")
            ax.plot(xs[front], ys[front], "-o", color="tab:red", label="Pareto front")
            for (x, y), lab in zip(pts, labels, strict=False):
                ax.annotate(lab, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
            ax.set_xscale("log")
        base = baseline_rows(ms, split)
        if base:
            name, best = max(base.items(), key=lambda kv: kv[1][metric])
            ax.axhline(best[metric], ls="--", color="gray", label=f"best baseline ({name.split('/', 1)[1]})")
        if budget_us:
            ax.axvline(budget_us, ls=":", color="black", label=f"budget {budget_us:g} us")
        ax.set_xlabel(f"p99 latency, {engine}, batch 1, 1 thread (us)")
        ax.set_ylabel(f"{metric} on {split}")
        ax.set_title(task)
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    if not drawn:
        plt.close(fig)
        return None
    return save(fig, out)


def per_split_bars(models: list[dict], task: str, splits: list[str], out: Path) -> Path | None:
    """Grouped bars of the primary metric: one group per test set, one bar per model and baseline."""
    ms = [m for m in models if m["task"] == task]
    splits = [s for s in splits if any(s in m["splits"] for m in ms)]
    if not ms or not splits:
        return None
    metric = ms[0]["primary"]
    series: dict[str, list[float]] = {
        m["label"]: [m["splits"].get(s, {}).get(metric, np.nan) for s in splits] for m in ms
    }
    for s_i, s in enumerate(splits):
        for label, scores in baseline_rows(ms, s).items():
            series.setdefault(label, [np.nan] * len(splits))[s_i] = scores[metric]
    fig, ax = plt.subplots(figsize=(min(24.0, max(6.0, 0.22 * len(splits) * len(series))), 4.2))
    width = 0.8 / len(series)
    x = np.arange(len(splits))
    for i, (label, values) in enumerate(series.items()):
        hatch = "//" if label.startswith("baseline/") else None
        ax.bar(
            x + (i - (len(series) - 1) / 2) * width,
            values,
            width,
            label=label,
            hatch=hatch,
            alpha=0.9 if not hatch else 0.6,
        )
    ax.set_xticks(x, [s.removeprefix("workload/") for s in splits], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(f"{task}: {metric} per test set (hatched: baselines)")
    ax.legend(fontsize=7, ncol=2, loc="best")
    ax.grid(axis="y", alpha=0.3)
    return save(fig, out)


def confusion(models: list[dict], task: str, split: str, out: Path) -> Path | None:
    ms = [m for m in models if m["task"] == task and "confusion" in m["splits"].get(split, {})]
    if not ms:
        return None
    fig, axes = plt.subplots(1, len(ms), figsize=(3.6 * len(ms), 3.4), squeeze=False, layout="constrained")
    for i, (ax, m) in enumerate(zip(axes[0], ms, strict=False)):
        cm = np.asarray(m["splits"][split]["confusion"], dtype=np.float64)
        ax.imshow(cm / np.maximum(cm.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
        if len(cm) <= 4:
            names = ["stay", "migrate"] if len(cm) == 2 else list(range(len(cm)))
            ax.set_xticks(range(len(cm)), names)
            ax.set_yticks(range(len(cm)), names)
            for (row, col), v in np.ndenumerate(cm):
                ax.text(col, row, f"{int(v)}", ha="center", va="center", fontsize=9)
        ax.set_xlabel("predicted")
        if i == 0:
            ax.set_ylabel("true")
        ax.set_title(f"{m['label']} ({split})", fontsize=9)
    fig.suptitle(f"{task}: confusion matrices (colour: row-normalised)", fontsize=10)
    return save(fig, out)


def importance(models: list[dict], task: str, out: Path) -> Path | None:
    ms = [m for m in models if m["task"] == task and m.get("importance")]
    if not ms:
        return None
    fig, axes = plt.subplots(
        1,
        len(ms),
        figsize=(4.2 * len(ms), 0.35 * max(len(m["importance"]["features"]) for m in ms) + 1.2),
        squeeze=False,
        layout="constrained",
    )
    for ax, m in zip(axes[0], ms, strict=False):
        imp = m["importance"]
        names = list(imp["features"])[::-1]
        ax.barh(
            names,
            [imp["features"][n]["drop_mean"] for n in names],
            xerr=[imp["features"][n]["drop_std"] for n in names],
        )
        ax.set_xlabel(f"drop in {imp['metric']} ({imp['split']})")
        ax.set_title(m["label"], fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(f"{task}: permutation importance", fontsize=10)
    return save(fig, out)


def feature_count(models: list[dict], task: str, split: str, out: Path) -> Path | None:
    """Primary metric against the number of input features, when the task's models differ in it."""
    ms = [m for m in models if m["task"] == task and split in m["splits"]]
    if len({m["n_inputs"] for m in ms}) < 2:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for backbone in dict.fromkeys(m["backbone"] for m in ms):
        pts = sorted((m["n_inputs"], m["splits"][split][m["primary"]]) for m in ms if m["backbone"] == backbone)
        ax.plot(*zip(*pts, strict=False), "-o", label=backbone)
    ax.set_xlabel("input features kept")
    ax.set_ylabel(f"{ms[0]['primary']} on {split}")
    ax.set_title(f"{task}: metric vs number of features")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, out)
