"""next_task as candidate scoring (issue 21 item 3): the DataModule of task next_task_candidates.

The samples are NextTaskDataModule's (the window of a CPU's last `window` switches ending at
switch i; the decision is switch i+1), restricted to switches to a task (next_tid != 0 at i+1).
Each sample's choices are the runnable set the replay rebuilt for switch i+1 (the builder's
`--runnable` files, DATASET/next_task/candidates_<split>.parquet; docs/data.md "The runnable set
at each switch") less the task the switch switches out: still runnable when it is preempted, it is
never the answer (a trace shows a switch only when the kernel picked another task), so it gets no
slot and its presence is the other candidates' `switch_preempts` input. A shared scorer sees one sequence per candidate: the CPU's steps (the next_task
step features), two indicator channels (the candidate was switched in / out at that step) and
the candidate's own features broadcast over the steps (CANDIDATE_SPECS, standardised on train).

A set larger than `max_candidates` keeps the tasks that waited longest (ties: lower tid), a rule
that never reads the label; a chosen task cut off, or never in the set, makes the sample's target
the miss slot `max_candidates`, which no predictor may name. Splits are stored compactly (steps,
window index, the candidates' rows with per-sample offsets) and each batch is assembled from them
(CandidateSplit.batch): only real candidates, packed (N, window, n_features).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from data.dataset.build import CANDIDATES_TABLE, candidates_file
from data.dataset.datamodule import TABLE_FILES, NextTaskDataModule
from data.dataset.encoding import FeatureSpec, apply_specs, fit_standardiser, standardise
from data.dataset.windows import SplitData, stream_order, stream_starts

DEFAULT_MAX_CANDIDATES = 32
BUILD_HINT = "python -m data.build --traces DIR --out DATASET --runnable"
STEP_PAD_TID = -2  # the window pad row's tid: matches no candidate (tids are >= 1)
INDICATORS = ("cand_switched_in", "cand_switched_out")  # per-step channels after the step features


def candidate_specs(k: int) -> list[FeatureSpec]:
    """A candidate's inputs (columns of the kept candidate rows): the replay's proxies, its MTF
    position (k: not in the list), whether the switch preempts the outgoing task, its rank by
    vruntime_proxy and by wait in the set (0..1), the set's size."""
    return [
        FeatureSpec("log_wait", "wait_ns", "log1p_us"),
        FeatureSpec("log_ran_since_enqueue", "ran_since_enqueue_ns", "log1p_us"),
        FeatureSpec("ran_since_enqueue_unknown", "ran_since_enqueue_ns", "onehot", -1),
        FeatureSpec("log_runtime_recent", "runtime_recent_ns", "log1p_us"),
        FeatureSpec("log_vruntime_proxy", "vruntime_proxy", "log1p_us"),
        FeatureSpec("rt", "rt", "flag"),
        FeatureSpec("log2_weight", "log2_weight", "identity"),
        FeatureSpec("switch_preempts", "switch_preempts", "flag"),
        *[FeatureSpec(f"mtf_{p}", "mtf_pos", "onehot", p) for p in range(k + 1)],
        FeatureSpec("rank_vruntime", "rank_vruntime", "identity"),
        FeatureSpec("rank_wait", "rank_wait", "identity"),
        FeatureSpec("log_nr_candidates", "log_nr_candidates", "identity"),
    ]


def mtf_positions(tids: np.ndarray, starts: np.ndarray, at: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """Position of task `query[j]` in its CPU's move-to-front list just before step `at[j]` (`at`
    ascending), k when not in it: the list data.dataset.encoding.mtf_encode keeps over `tids`
    (streams begin where `starts`), so the chosen task's position is the step's MTF token."""
    out = np.full(len(query), k, dtype=np.int64)
    mtf: list[int] = []
    j, n = 0, len(query)
    at_l, query_l = at.tolist(), query.tolist()
    for i, t in enumerate(tids.tolist()):
        if starts[i]:
            mtf = []
        while j < n and at_l[j] == i:
            q = query_l[j]
            if q in mtf:
                out[j] = mtf.index(q)
            j += 1
        if t != 0:
            if t in mtf:
                mtf.remove(t)
            elif len(mtf) == k:
                mtf.pop()
            mtf.insert(0, t)
    return out


def _group_rank(sample: np.ndarray, key: np.ndarray, tid: np.ndarray) -> np.ndarray:
    """0-based rank of each row within its sample by `key` ascending, ties by tid (rows grouped by sample)."""
    order = np.lexsort((tid, key, sample))
    first = np.r_[True, sample[order][1:] != sample[order][:-1]]
    pos = np.arange(len(order))
    rank = pos - np.maximum.accumulate(np.where(first, pos, 0))
    out = np.empty(len(order), dtype=np.int64)
    out[order] = rank
    return out


@dataclass
class CandidateSplit(SplitData):
    """A split of next_task_candidates: SplitData (steps, window index, target slot per sample, the
    window-end rows with the token columns the Markov baseline reads) plus the candidates, rows
    grouped by sample (`start` offsets, in tid order), their standardised inputs and raw columns."""

    start: torch.Tensor | None = None  # int64 (samples + 1,) offsets into the candidate rows
    cand_x: torch.Tensor | None = None  # float32 (N, n_candidate_features), standardised
    cand_tid: torch.Tensor | None = None  # int64 (N,)
    step_in: torch.Tensor | None = None  # int64 (rows + 1,) tid switched in at each step; pad STEP_PAD_TID
    step_out: torch.Tensor | None = None  # int64 (rows + 1,) tid switched out at each step
    candidates: pd.DataFrame = field(default_factory=pd.DataFrame)  # raw columns of the N rows (+ sample, slot)
    max_candidates: int = DEFAULT_MAX_CANDIDATES

    def counts(self, samples: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """Candidates kept per sample."""
        return (self.start[1:] - self.start[:-1])[samples]

    def rows_of(self, samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(candidate rows, their sample's position in `samples`, their slot) of the samples."""
        n = self.counts(samples)
        owner = torch.repeat_interleave(torch.arange(len(samples)), n)
        slot = torch.arange(int(n.sum())) - torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
        return self.start[samples][owner] + slot, owner, slot

    def batch(self, samples: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model's batch: x (N, L, F) for the N candidates of `samples`, their `owner` (0..B-1) and
        `slot`, and y (B,) the chosen slot (max_candidates: a miss)."""
        rows, owner, slot = self.rows_of(samples)
        idx = self.index[samples][owner]  # (N, L)
        tid = self.cand_tid[rows][:, None]
        steps = self.steps[idx]
        inds = torch.stack([self.step_in[idx] == tid, self.step_out[idx] == tid], dim=-1).to(steps.dtype)
        cand = self.cand_x[rows][:, None, :].expand(-1, idx.shape[1], -1)
        return {
            "x": torch.cat([steps, inds, cand], dim=-1),
            "owner": owner,
            "slot": slot,
            "y": self.target[samples],
        }

    def last_window(self) -> tuple[torch.Tensor, None]:
        """One candidate's sequence (1, L, F) of the split's last sample with a candidate: the
        scorer's input for one candidate (a decision costs that times the set's size)."""
        has = torch.nonzero(self.counts() > 0).flatten()
        return self.batch(has[-1:])["x"][:1].contiguous(), None


class CandidateDataset(Dataset):
    """Map-style dataset of samples; `__getitems__` assembles a whole batch (CandidateSplit.batch)."""

    def __init__(self, split: CandidateSplit):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return self.split.batch(torch.as_tensor(indices, dtype=torch.long))


class NextTaskCandidatesDataModule(NextTaskDataModule):
    """NextTaskDataModule's samples and steps (MTF encoding) scored over the runnable set of the
    next switch (module docstring). meta: the step features as next_task's (`n_step_features`),
    `candidate_features` with their train mean / std, `max_candidates`, the token layout under
    `token_classes` / `token_count` (the Markov baseline's), and n_features = steps + 2 indicators
    + candidate features, n_out 1 (one score per candidate)."""

    task = "next_task_candidates"
    table = "next_task"
    # replay outputs make_split takes beside the decision table (evaluation.sources replays a trace
    # with runnable=True for them): replay(..., runnable=True).candidates
    replay_tables = ("candidates",)

    def __init__(self, *args, max_candidates: int = DEFAULT_MAX_CANDIDATES, **kwargs):
        if max_candidates < 3:
            raise ValueError(f"max_candidates must be >= 3 (top-3 is reported), got {max_candidates}")
        kwargs["encoding"] = "mtf"
        super().__init__(*args, **kwargs)
        self.max_candidates = int(self.meta["max_candidates"]) if self.meta else max_candidates
        self._cand_files: dict[str, pd.DataFrame] = {}

    # ---------------------------------------------------------------- candidate files
    def candidates_path(self, split: str):
        return self.dataset_dir / CANDIDATES_TABLE / candidates_file(split)

    def prepare_data(self) -> None:
        super().prepare_data()
        if self.meta is None and not self.candidates_path("train").exists():
            raise FileNotFoundError(self._no_candidates())

    def _no_candidates(self) -> str:
        # the command on a line of its own (indented two spaces): the CLIs print it whole below the error
        return (
            f"task next_task_candidates needs a dataset built with --runnable: {self.dataset_dir} has no "
            f"next_task/{candidates_file('train')}\n  {BUILD_HINT}"
        )

    def candidate_frame(self, run_ids) -> pd.DataFrame:
        """The candidate rows of `run_ids` from the dataset's candidates_<split> files."""
        want = set(run_ids)
        frames = []
        for f in TABLE_FILES:
            if f not in self._cand_files:
                path = self.candidates_path(f)
                if not path.exists():
                    raise FileNotFoundError(self._no_candidates())
                self._cand_files[f] = pd.read_parquet(path)
            df = self._cand_files[f]
            frames.append(df[df["run_id"].isin(want)])
        return pd.concat(frames, ignore_index=True)

    def release(self) -> None:
        super().release()
        self._cand_files.clear()

    # ---------------------------------------------------------------- samples
    def fit_meta(self, train: pd.DataFrame) -> dict:
        meta = super().fit_meta(train)
        meta.update(
            token_classes=meta["n_out"],
            token_count=meta["n_tokens"],
            n_step_features=meta["n_features"],
            max_candidates=self.max_candidates,
        )
        specs = candidate_specs(meta["k"])
        saved, self.meta = self.meta, meta
        try:
            cands = self._candidates(train, None, "train")[2]
        finally:
            self.meta = saved
        mean, std = fit_standardiser(apply_specs(cands, specs), specs)
        meta.update(
            candidate_features=[s.to_dict() for s in specs],
            candidate_mean=mean,
            candidate_std=std,
            n_features=meta["n_step_features"] + len(INDICATORS) + len(specs),
            n_out=1,
            n_tokens=0,
        )
        return meta

    def _candidates(self, df: pd.DataFrame, candidates: pd.DataFrame | None, name: str):
        """(next_task's split of the switches to a task, the switch rows in stream order, the kept
        candidate rows with their raw inputs, sample and slot, grouped by sample in tid order)."""
        df = df.reset_index(drop=True)
        df = df.assign(row=df.groupby("run_id", sort=False).cumcount().to_numpy())  # the replay's `row`
        base = NextTaskDataModule.make_split(self, df, name)
        ordered = df.iloc[stream_order(df, self.keys)].reset_index(drop=True)
        at = base.index[:, -1].numpy()  # switch i of each sample, in `ordered`
        if len(at) and not np.array_equal(ordered["row"].to_numpy()[at], base.rows["row"].to_numpy()):
            raise AssertionError("next_task samples and the stream order disagree")
        next_tid = ordered["next_tid"].to_numpy()
        keep = next_tid[at + 1] != 0 if len(at) else np.zeros(0, dtype=bool)
        nxt = at[keep] + 1  # the decided switch i+1 of each kept sample
        sample_of = np.full(len(ordered), -1, dtype=np.int64)
        sample_of[nxt] = np.arange(len(nxt))
        if candidates is None:
            candidates = self.candidate_frame(df["run_id"].unique())
        where = pd.DataFrame({"run_id": ordered["run_id"].to_numpy(), "row": ordered["row"].to_numpy()})
        where["at"] = np.arange(len(ordered))
        c = candidates.merge(where, on=["run_id", "row"], how="inner")
        c["sample"] = sample_of[c["at"].to_numpy()]
        c = c[c["sample"] >= 0]
        c = c.sort_values(["sample", "tid"], kind="stable").reset_index(drop=True)
        sample, tid = c["sample"].to_numpy(), c["tid"].to_numpy()
        k = self.meta["k"]
        at_c = c["at"].to_numpy()
        starts = stream_starts(ordered, self.keys)
        by_at = np.argsort(at_c, kind="stable")
        mtf = np.empty(len(c), dtype=np.int64)
        mtf[by_at] = mtf_positions(next_tid, starts, at_c[by_at], tid[by_at], k)
        # the task this switch switches out (still runnable: a preemption) is never the one it runs (a
        # trace shows a switch only when the kernel picked another task): no slot, a flag on the others
        out = tid == ordered["prev_tid"].to_numpy()[at_c]
        preempts = np.zeros(len(nxt), dtype=np.int8)
        preempts[sample[out]] = 1
        c, mtf = c[~out].reset_index(drop=True), mtf[~out]
        sample, tid = c["sample"].to_numpy(), c["tid"].to_numpy()
        size = np.bincount(sample, minlength=len(nxt))[sample]
        scale = np.maximum(size - 1, 1)
        wait = c["wait_ns"].to_numpy()
        c = c.assign(
            mtf_pos=mtf,
            switch_preempts=preempts[sample],
            log2_weight=np.log2(c["weight"].to_numpy(dtype=np.float64) / 1024.0),
            rank_vruntime=_group_rank(sample, c["vruntime_proxy"].to_numpy(), tid) / scale,
            rank_wait=_group_rank(sample, -wait, tid) / scale,
            log_nr_candidates=np.log(np.maximum(c["nr_candidates"].to_numpy(dtype=np.float64) - preempts[sample], 1.0)),
        )
        # the label-blind cut: the max_candidates longest waits (ties: lower tid), then tid order again
        c = c[_group_rank(sample, -wait, tid) < self.max_candidates].reset_index(drop=True)
        first = np.r_[True, c["sample"].to_numpy()[1:] != c["sample"].to_numpy()[:-1]] if len(c) else np.zeros(0, bool)
        pos = np.arange(len(c))
        c["slot"] = pos - np.maximum.accumulate(np.where(first, pos, 0)) if len(c) else pos
        return base, (keep, nxt, ordered), c

    def make_split(self, df: pd.DataFrame, name: str, candidates: pd.DataFrame | None = None) -> CandidateSplit:
        """Samples of any next_task table (whole runs in their replay order: `row` is each run's
        row index); `candidates`: those runs' candidate rows (default: the dataset's files)."""
        base, (keep, nxt, ordered), c = self._candidates(df, candidates, name)
        n, C = len(nxt), self.max_candidates
        sample = c["sample"].to_numpy()
        start = np.searchsorted(sample, np.arange(n + 1)).astype(np.int64)
        target = np.full(n, C, dtype=np.int64)
        chosen = c[c["chosen"].to_numpy() != 0]
        target[chosen["sample"].to_numpy()] = chosen["slot"].to_numpy()
        specs = [FeatureSpec(**d) for d in self.meta["candidate_features"]]
        cand_x = standardise(apply_specs(c, specs), self.meta["candidate_mean"], self.meta["candidate_std"])

        def tids(col: str) -> torch.Tensor:
            return torch.from_numpy(np.append(ordered[col].to_numpy(dtype=np.int64), STEP_PAD_TID))

        rows = base.rows[keep].reset_index(drop=True)
        return CandidateSplit(
            name,
            base.steps,
            base.index[torch.from_numpy(keep)],
            torch.from_numpy(target),
            tokens=None,
            rows=rows.assign(next_row=ordered["row"].to_numpy()[nxt]),  # the decided switch's `row`
            start=torch.from_numpy(start),
            cand_x=torch.from_numpy(np.ascontiguousarray(cand_x)),
            cand_tid=torch.from_numpy(c["tid"].to_numpy(dtype=np.int64).copy()),
            step_in=tids("next_tid"),
            step_out=tids("prev_tid"),
            candidates=c,
            max_candidates=C,
        )

    def dataset_of(self, split: CandidateSplit) -> CandidateDataset:
        return CandidateDataset(split)
