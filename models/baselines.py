"""Baselines, fitted on the DataModule's training split and scored with the task's own metrics.

A baseline is a fixed predictor that emits logits shaped like the network's, so the task module's
`metric_inputs` and `make_metrics` score it exactly like the model. `BaselineMetrics` (a
callback, on by default) logs them at the end of testing as `<split>/baseline/<name>/<metric>`.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch import nn

from data.can_migrate.rule import kernel_verdict, task_hot
from data.dataset.forced_future import FORCED_FUTURE, PAST_RATE, PREV_FORCED
from data.dataset.windows import SplitData
from models.tasks.next_task_candidates import slot_logits

log = logging.getLogger(__name__)

CACHE_HOT_NS = 500_000  # the kernel's sysctl_sched_migration_cost (500 us)
CONFIDENT = 20.0  # logit used for hard yes/no rules


class Baseline:
    name: str = ""
    skip: str | None = None  # set by fit: why this baseline cannot be scored here (it is left out)

    def fit(self, train: SplitData, meta: dict) -> Baseline:
        self.meta = meta
        return self

    def logits(self, split: SplitData, rows: slice) -> torch.Tensor:
        raise NotImplementedError


def _hard(decision: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.where(decision, CONFIDENT, -CONFIDENT), dtype=torch.float32)[:, None]


# ------------------------------------------------------------------------ binary decisions
class Constant(Baseline):
    """Always the same answer; `Constant(False, "always_stay")` never migrates."""

    def __init__(self, answer: bool, name: str):
        self.answer, self.name = answer, name

    def logits(self, split, rows):
        return torch.full((len(split.target[rows]), 1), CONFIDENT if self.answer else -CONFIDENT)


class LoadHeuristic(Baseline):
    """Migrate iff another CPU is idle and the task is not cache-hot (slept > 500 us)."""

    name = "load_heuristic"

    def logits(self, split, rows):
        r = split.rows.iloc[rows]
        return _hard((r["other_idle"].to_numpy() != 0) & (r["since_last_ran_ns"].to_numpy() > CACHE_HOT_NS))


class CacheCold(Baseline):
    """can_migrate: allow the migration iff the task is not cache-hot (Chen's delta_hot == 0)."""

    name = "cache_cold"

    def logits(self, split, rows):
        return _hard(split.rows.iloc[rows]["delta_hot"].to_numpy() == 0)


class Majority(Baseline):
    """The training split's majority class (can_migrate: mostly "allow")."""

    name = "majority"

    def fit(self, train, meta):
        super().fit(train, meta)
        self.answer = bool(train.target.float().mean() >= 0.5) if len(train.target) else False
        return self

    def logits(self, split, rows):
        return torch.full((len(split.target[rows]), 1), CONFIDENT if self.answer else -CONFIDENT)


class KernelRule(Baseline):
    """can_migrate: the kernel's own verdict recomputed from the row's fields (data/can_migrate/rule.py);
    for label `forced`, the rule's "allowed although cache hot". Below 100% only where the
    record misses or approximates what the kernel read (see data/can_migrate/rule.py)."""

    name = "kernel_rule"

    def logits(self, split, rows):
        allow, forced = kernel_verdict(split.rows.iloc[rows])
        return _hard((forced if self.meta.get("label") == "forced" else allow) != 0)


class LogisticRegression(Baseline):
    """Class-balanced logistic regression on the current step's standardised features (LBFGS)."""

    name = "logreg"

    def __init__(self, l2: float = 1e-4, max_iter: int = 100):
        self.l2, self.max_iter = l2, max_iter

    @staticmethod
    def current(split: SplitData, rows: slice = slice(None)) -> torch.Tensor:
        return split.steps[split.index[rows, -1], :-1]  # drop the constant `valid` channel

    def fit(self, train, meta):
        # Lightning tests under inference mode; this fit needs autograd.
        with torch.inference_mode(False), torch.enable_grad():
            return self._fit(train, meta)

    def _fit(self, train, meta):
        super().fit(train, meta)
        x, y = self.current(train).clone(), train.target.clone()
        pos = float(y.sum())
        self.linear = nn.Linear(x.shape[1], 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(y) - pos) / max(pos, 1.0)))
        opt = torch.optim.LBFGS(self.linear.parameters(), max_iter=self.max_iter, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = loss_fn(self.linear(x).squeeze(-1), y) + self.l2 * self.linear.weight.square().sum()
            loss.backward()
            return loss

        if len(y) and 0 < pos < len(y):
            opt.step(closure)
        return self

    @torch.no_grad()
    def logits(self, split, rows):
        return self.linear(self.current(split, rows))


# ------------------------------------------------------------------------ can_migrate, label forced_future
# (data/dataset/forced_future.py: will one of the task's next calls be forced?). The rows'
# prev_forced and past_forced_rate read only the task's calls before the current one.
class ForcedLastCall(Baseline):
    """forced_future: yes iff the task's previous call was forced."""

    name = "forced_last_call"

    def logits(self, split, rows):
        return _hard(split.rows.iloc[rows][PREV_FORCED].to_numpy() != 0)


def best_threshold(score: np.ndarray, y: np.ndarray) -> float:
    """The cut t maximising the balanced accuracy of `score > t` on (score, y), halfway between
    two distinct scores (0.5 when y holds one class only)."""
    y = y != 0
    if not len(y) or y.all() or not y.any():
        return 0.5
    values = np.unique(score)
    cuts = np.concatenate([[values[0] - 1.0], (values[:-1] + values[1:]) / 2])
    order = np.argsort(score, kind="stable")
    s, ys = score[order], y[order]
    below = np.searchsorted(s, cuts, side="right")  # rows with score <= cut: predicted no
    neg_below = np.concatenate([[0], np.cumsum(~ys)])[below]
    pos_below = np.concatenate([[0], np.cumsum(ys)])[below]
    bal = (neg_below / (~y).sum() + (y.sum() - pos_below) / y.sum()) / 2
    return float(cuts[int(np.argmax(bal))])


class TaskForcedRate(Baseline):
    """forced_future: the task's forced share over its past calls, cut at the threshold that
    maximises balanced accuracy on the training split (best_threshold; 0.5 when training holds
    one class); the logit grows with the rate, so AP ranks by it."""

    name = "task_forced_rate"

    def fit(self, train, meta):
        super().fit(train, meta)
        self.threshold = best_threshold(
            train.rows[PAST_RATE].to_numpy(dtype=np.float64), train.target.numpy() if len(train.target) else np.zeros(0)
        )
        return self

    def logits(self, split, rows):
        rate = split.rows.iloc[rows][PAST_RATE].to_numpy(dtype=np.float64)
        return torch.as_tensor(10.0 * (rate - self.threshold), dtype=torch.float32)[:, None]


class HotAndFailing(Baseline):
    """forced_future: the task is hot at this call (task_hot(): delta_hot or buddy_hot, 0 on an
    SMT domain or outside CFS) and its domain has failed exactly cache_nice_tries times, so one
    more failure makes the next call forced. Needs the raw nr_balance_failed and
    cache_nice_tries columns (tables built before them: skipped with the reason)."""

    name = "hot_and_failing"
    NEEDS = ("nr_balance_failed", "cache_nice_tries")

    def fit(self, train, meta):
        super().fit(train, meta)
        missing = [c for c in self.NEEDS if c not in train.rows]
        self.skip = (
            f"the table has no {', '.join(missing)} (built before they were carried: rebuild with python -m data.build)"
            if missing
            else None
        )
        return self

    def logits(self, split, rows):
        r = split.rows.iloc[rows]
        failing = r["nr_balance_failed"].to_numpy() == r["cache_nice_tries"].to_numpy()
        return _hard((task_hot(r) != 0) & failing)


# ------------------------------------------------------------------------ next_task
class TokenBaseline(Baseline):
    """Token predictors rank every class: their own guesses first, then by training frequency."""

    def fit(self, train, meta):
        super().fit(train, meta)
        n = meta["n_out"]
        counts = np.bincount(train.rows["target"].to_numpy(), minlength=n)[:n].astype(np.float64)
        order = np.lexsort((np.arange(n), -counts))  # most frequent first, ties by token id
        self.prior = torch.empty(n)
        self.prior[torch.as_tensor(order)] = -torch.arange(n, dtype=torch.float32) / n  # in (-1, 0]
        return self

    def guesses(self, split: SplitData, rows: slice) -> np.ndarray:
        """(samples, G) tokens to rank first, best first; -1 = no guess."""
        return np.full((len(split.target[rows]), 0), -1)

    def logits(self, split, rows):
        g = self.guesses(split, rows)
        out = self.prior.repeat(len(g), 1)
        r, c = np.nonzero(g >= 0)
        out[torch.as_tensor(r), torch.as_tensor(g[r, c])] = torch.as_tensor(10.0 - c, dtype=torch.float32)
        return out


class MostFrequent(TokenBaseline):
    """The most frequent training target (then the next most frequent, for top-k)."""

    name = "most_frequent"


class RepeatTwoBack(TokenBaseline):
    """The task that ran two switches ago comes back (ping-pong between two tasks)."""

    name = "repeat_2_back"

    def guesses(self, split, rows):
        return split.rows["two_back"].to_numpy()[rows, None]


class Markov(TokenBaseline):
    """Order-`order` Markov chain over tokens, backing off to shorter contexts when unseen.

    For every context seen in training it keeps the `top` most frequent next tokens.
    """

    CONTEXT = ("ctx2", "ctx1", "token")  # tokens at steps i-2, i-1, i

    def __init__(self, order: int = 3, top: int = 3):
        if not 1 <= order <= len(self.CONTEXT):
            raise ValueError(f"order must be 1..{len(self.CONTEXT)}")
        self.order, self.top = order, top
        self.name = f"markov{order}"

    def _keys(self, rows: pd.DataFrame, k: int) -> np.ndarray:
        """One int64 per context of the last k tokens (tokens < n_tokens, so the code is exact)."""
        key = np.zeros(len(rows), dtype=np.int64)
        for col in self.CONTEXT[-k:]:
            key = key * self.meta["n_tokens"] + rows[col].to_numpy(dtype=np.int64)
        return key

    def fit(self, train, meta):
        super().fit(train, meta)
        self.tables = []  # (context keys, (contexts, top) next tokens), longest context first
        for k in range(self.order, 0, -1):
            df = pd.DataFrame({"key": self._keys(train.rows, k), "target": train.rows["target"].to_numpy()})
            counts = df.groupby(["key", "target"]).size().rename("n").reset_index()
            counts = counts.sort_values(["key", "n", "target"], ascending=[True, False, True])
            counts["rank"] = counts.groupby("key").cumcount()
            counts = counts[counts["rank"] < self.top]
            keys = pd.Index(counts["key"].unique())
            table = np.full((len(keys), self.top), -1, dtype=np.int64)
            table[keys.get_indexer(counts["key"]), counts["rank"].to_numpy()] = counts["target"].to_numpy()
            self.tables.append((keys, table))
        return self

    def guesses(self, split, rows):
        sel = split.rows.iloc[rows]
        out = np.full((len(sel), self.top), -1, dtype=np.int64)
        todo = np.ones(len(sel), dtype=bool)
        for k, (keys, table) in zip(range(self.order, 0, -1), self.tables, strict=False):
            hit = keys.get_indexer(self._keys(sel, k))
            use = todo & (hit >= 0)
            out[use] = table[hit[use]]
            todo &= ~use
        return out


# ------------------------------------------------------------------------ next_task_candidates
# Rules over the runnable set of data/dataset/candidates.py (CandidateSplit); the proxies they read
# depart from the kernel's quantities as docs/data.md "The runnable set at each switch" says.
class CandidateRule(Baseline):
    """Ranks each sample's candidates by `keys` (most significant first, higher first; ties: the
    lower slot, i.e. the lower tid) and fills the module's slots with minus the rank."""

    def keys(self, split, cands: pd.DataFrame, samples: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def logits(self, split, rows):
        samples = torch.arange(len(split))[rows]
        idx, owner, slot = split.rows_of(samples)
        cands = split.candidates.iloc[idx.numpy()]
        own = owner.numpy()
        keys = self.keys(split, cands, samples.numpy()[own])
        order = np.lexsort((slot.numpy(), *[-np.asarray(k, dtype=np.float64) for k in reversed(keys)], own))
        first = np.r_[True, own[order][1:] != own[order][:-1]] if len(order) else np.zeros(0, dtype=bool)
        pos = np.arange(len(order))
        rank = np.empty(len(order), dtype=np.float32)
        rank[order] = pos - np.maximum.accumulate(np.where(first, pos, 0))
        return slot_logits(torch.from_numpy(-rank), owner, slot, len(samples), split.max_candidates)


class MinVruntime(CandidateRule):
    """The least vruntime_proxy (recent runtime scaled by weight): CFS's pick, roughly EEVDF's."""

    name = "min_vruntime"

    def keys(self, split, cands, samples):
        return [-cands["vruntime_proxy"].to_numpy(dtype=np.float64)]


class LongestWait(CandidateRule):
    """The task queued longest (FIFO)."""

    name = "longest_wait"

    def keys(self, split, cands, samples):
        return [cands["wait_ns"].to_numpy(dtype=np.float64)]


class PrevIfPreempted(CandidateRule):
    """The task the previous switch preempted (switched out at switch i in state R) when it is in
    the set, else the longest wait: the task that ran two switches ago comes back."""

    name = "prev_if_preempted"

    def keys(self, split, cands, samples):
        last = split.rows.iloc[samples]
        preempted = last["prev_state"].fillna("").astype(str).str.startswith("R").to_numpy()
        back = preempted & (cands["tid"].to_numpy() == last["prev_tid"].to_numpy())
        return [back, cands["wait_ns"].to_numpy(dtype=np.float64)]


class CandidateMarkov(CandidateRule):
    """next_task's token Markov chain (Markov, fitted on the same training samples): its ranked
    token guesses name the candidate at that MTF position, the other candidates follow by the
    training prior of their position's token ("not in the list" guesses name none)."""

    def __init__(self, order: int = 3):
        self.markov = Markov(order)
        self.name = self.markov.name

    def fit(self, train, meta):
        super().fit(train, meta)
        self.markov.fit(train, {**meta, "n_out": meta["token_classes"], "n_tokens": meta["token_count"]})
        return self

    def keys(self, split, cands, samples):
        pos = cands["mtf_pos"].to_numpy()
        score = self.markov.prior.numpy()[pos].astype(np.float64)
        first = int(samples.min()) if len(samples) else 0
        guesses = self.markov.guesses(split, slice(first, int(samples.max()) + 1 if len(samples) else 0))
        g = guesses[samples - first]  # (N, top) for each candidate's sample
        for c in range(g.shape[1] - 1, -1, -1):  # the best guess last, so it wins
            hit = (g[:, c] == pos) & (pos < self.meta["k"])
            score[hit] = 10.0 - c
        return [score]


def baselines_for(task: str, meta: dict | None = None) -> list[Baseline]:
    """The baselines of a task; can_migrate with label forced_future (meta["label"]) has its own:
    always-no (its accuracy is the one to read a model's beside), the task's previous call, its
    past forced rate, hot-and-failing, and logistic regression on the current call."""
    if task == "can_migrate" and (meta or {}).get("label") == FORCED_FUTURE:
        return [Constant(False, "always_no"), ForcedLastCall(), TaskForcedRate(), HotAndFailing(), LogisticRegression()]
    return {
        "migration": [Constant(False, "always_stay"), LoadHeuristic(), LogisticRegression()],
        "can_migrate": [Majority(), KernelRule(), CacheCold(), LogisticRegression()],
        "next_task": [MostFrequent(), RepeatTwoBack(), Markov(3)],
        "next_task_candidates": [MinVruntime(), LongestWait(), PrevIfPreempted(), CandidateMarkov(3)],
    }[task]


def fit_baselines(task: str, train: SplitData, meta: dict) -> list[Baseline]:
    """The task's baselines fitted on `train`; one that cannot be scored on these rows (its
    `skip`) is left out with a logged reason."""
    fitted = []
    for b in baselines_for(task, meta):
        b.fit(train, meta)
        if b.skip:
            log.warning("baseline %s skipped: %s", b.name, b.skip)
        else:
            fitted.append(b)
    return fitted


def evaluate_baselines(module, datamodule, splits: list[str], chunk: int = 4096) -> dict[str, float]:
    """{"<split>/baseline/<name>/<metric>": value} for every baseline of the module's task."""
    meta = module.meta
    train = datamodule.get_split("train")
    out = {}
    for baseline in fit_baselines(meta["task"], train, meta):
        for name in splits:
            split = datamodule.get_split(name)
            metrics = module.make_metrics()
            for a in range(0, len(split), chunk):
                rows = slice(a, a + chunk)
                metrics.update(module.metric_inputs(baseline.logits(split, rows)), split.target[rows].long())
            for key, value in metrics.compute().items():
                out[f"{name}/baseline/{baseline.name}/{key}"] = float(value)
    return out


class BaselineMetrics(pl.Callback):
    """Logs every baseline's test metrics next to the model's (same splits, same metrics)."""

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "get_split") or trainer.sanity_checking:
            return
        metrics = evaluate_baselines(pl_module, dm, pl_module.test_names)
        # every rank computes the same values; sync_dist only keeps Lightning's DDP bookkeeping happy
        pl_module.log_dict(metrics, add_dataloader_idx=False, sync_dist=True)
