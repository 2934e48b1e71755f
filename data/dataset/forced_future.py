"""Label `forced_future` (issue 22, Pinto's experiment 2): will one of the task's next calls be
a forced migration?

For every kept can_migrate call i of task p (a row of the can_migrate table) at time ts[i]:

    forced_future[i] = any(forced[j] for j among p's next N calls strictly after ts[i],
                           with ts[j] - ts[i] <= T)

"p's calls" are the rows of the same (run_id, pid), in time order (ts, ties in table order);
"the next N calls strictly after ts[i]" skip the calls of p at the same ts as i (a tie is not
the future) and take the N that follow. T is guest (emulated) time: the records' ts. Beside the
label, computed from the same grouping:

* `forced_lead_ns`: ts of the first such forced call minus ts[i] (-1 where the label is 0);
* `dt_prev_call_ns`: ts[i] minus ts of p's previous call (-1 for p's first call) and
  `has_prev_call` (0 for the first call), the per-step input `log_dt_prev_call`;
* `prev_forced` (p's previous call was forced; 0 for the first) and `past_forced_rate`
  (p's forced share over its calls before i; 0 for the first), the baselines' inputs.

Every column but the label and forced_lead_ns reads only p's calls up to i; the label reads only
calls after ts[i]. nr_balance_failed belongs to the sched domain, not to p: it is context of a
call (the hot-and-failing baseline), never a property of the task.

All of it is vectorised: one sort, then N shifted comparisons (tables hold up to 500k rows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.dataset.windows import stream_order, stream_starts

FORCED_FUTURE = "forced_future"
LEAD = "forced_lead_ns"
DT_PREV = "dt_prev_call_ns"
HAS_PREV = "has_prev_call"
PREV_FORCED = "prev_forced"
PAST_RATE = "past_forced_rate"
COLUMNS = (FORCED_FUTURE, LEAD, DT_PREV, HAS_PREV, PREV_FORCED, PAST_RATE)
TASK_KEYS = ("run_id", "pid")
# data.future's defaults (conf/data/can_migrate.yaml): to be chosen on validation
DEFAULT_CALLS = 8
DEFAULT_HORIZON_MS = 25.0


def task_order(df: pd.DataFrame, keys=TASK_KEYS) -> np.ndarray:
    """Row order grouping each task's calls, in time order, ties in table order: the windows'
    stream order with keys run_id, pid."""
    return stream_order(df, list(keys))


def forced_future(
    df: pd.DataFrame,
    calls: int = DEFAULT_CALLS,
    horizon_ms: float = DEFAULT_HORIZON_MS,
    forced: str = "forced",
    keys=TASK_KEYS,
) -> pd.DataFrame:
    """COLUMNS (module docstring) for the rows of can_migrate table `df` (any row order, many
    runs), aligned with df.index."""
    if calls < 1:
        raise ValueError(f"data.future.calls must be >= 1, got {calls}")
    if not horizon_ms > 0:
        raise ValueError(f"data.future.horizon_ms must be > 0, got {horizon_ms}")
    keys = list(keys)
    n = len(df)
    order = task_order(df, keys)
    s = df.iloc[order]
    ts = s["ts"].to_numpy(dtype=np.int64)
    f = s[forced].to_numpy() != 0
    start = stream_starts(s, keys)
    gid = np.cumsum(start) - 1  # task group of each sorted row
    pos = np.arange(n)
    first = np.maximum.accumulate(np.where(start, pos, 0)) if n else pos  # group's first row
    end = np.append(np.flatnonzero(start)[1:], n)[gid] if n else pos  # one past the group's last row
    # the first call strictly after ts[i]: one past the last row of i's (task, ts) tie block
    block_start = start.copy()
    block_start[1:] |= ts[1:] != ts[:-1]
    block_end = np.append(np.flatnonzero(block_start)[1:], n)[np.cumsum(block_start) - 1] if n else pos
    horizon_ns = int(round(horizon_ms * 1e6))
    label = np.zeros(n, dtype=bool)
    lead = np.full(n, -1, dtype=np.int64)
    for m in range(calls):  # the m-th call after ts[i]; ts is sorted within a task
        j = block_end + m
        ok = j < end
        jj = np.where(ok, j, 0)
        ok &= (ts[jj] - ts) <= horizon_ns
        hit = ok & f[jj] & ~label
        lead[hit] = ts[jj][hit] - ts[hit]
        label |= hit
    has_prev = pos > first
    prev = np.where(has_prev, pos - 1, 0)
    dt = np.where(has_prev, ts - ts[prev], -1) if n else np.zeros(0, np.int64)
    prev_forced = has_prev & f[prev] if n else np.zeros(0, bool)
    cum = np.cumsum(f) - f  # forced calls before i, over the whole sorted table
    before = cum - cum[first] if n else cum  # ... within i's task
    count = pos - first
    rate = np.where(count > 0, before / np.maximum(count, 1), 0.0)
    out = pd.DataFrame(
        {
            FORCED_FUTURE: label.astype(np.int8),
            LEAD: lead,
            DT_PREV: dt.astype(np.int64),
            HAS_PREV: has_prev.astype(np.int8),
            PREV_FORCED: prev_forced.astype(np.int8),
            PAST_RATE: rate.astype(np.float32),
        }
    )
    back = np.empty(n, dtype=np.int64)
    back[order] = pos
    return out.iloc[back].set_axis(df.index)


def with_forced_future(df: pd.DataFrame, calls: int = DEFAULT_CALLS, horizon_ms: float = DEFAULT_HORIZON_MS):
    """`df` with COLUMNS added (replaced where present)."""
    cols = forced_future(df, calls, horizon_ms)
    return pd.concat([df.drop(columns=[c for c in COLUMNS if c in df]), cols], axis=1)


def lead_times(pred, target, lead_ns, keys: pd.DataFrame | None = None) -> dict:
    """Lead time of correct positives, in ms: how far ahead of the forced call they come.

    `pred`, `target` (0/1 per row) and `lead_ns` (forced_lead_ns) are aligned per row. Returns
    {"true_positives", "tp_p50_ms", "tp_p90_ms"} over the true-positive rows' lead; with `keys`
    (a frame with run_id, pid, ts per row) also per forced event (the forced call each
    positive row points at: the task's ts + lead) the earliest correct positive ahead of it:
    {"events", "events_caught", "event_p50_ms", "event_p90_ms"}. Percentiles are None when there
    is nothing to take them over."""
    pred = np.asarray(pred).reshape(-1) != 0
    target = np.asarray(target).reshape(-1) != 0
    lead = np.asarray(lead_ns, dtype=np.int64).reshape(-1)
    tp = pred & target & (lead >= 0)

    def pct(v: np.ndarray, q: float):
        return float(np.percentile(v, q)) / 1e6 if len(v) else None

    out = {"true_positives": int(tp.sum()), "tp_p50_ms": pct(lead[tp], 50), "tp_p90_ms": pct(lead[tp], 90)}
    if keys is not None:
        pos = target & (lead >= 0)
        ev = pd.DataFrame(
            {
                "run_id": keys["run_id"].to_numpy()[pos],
                "pid": keys["pid"].to_numpy()[pos],
                "at": keys["ts"].to_numpy(dtype=np.int64)[pos] + lead[pos],
                "lead": lead[pos],
                "tp": tp[pos],
            }
        )
        events = ev.groupby(["run_id", "pid", "at"], sort=False)
        caught = ev[ev["tp"]].groupby(["run_id", "pid", "at"], sort=False)["lead"].max()  # earliest = largest lead
        out.update(
            events=int(events.ngroups),
            events_caught=int(len(caught)),
            event_p50_ms=pct(caught.to_numpy(), 50),
            event_p90_ms=pct(caught.to_numpy(), 90),
        )
    return out
