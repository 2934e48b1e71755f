"""Report files of an export: atomic writes, calibration table, markdown summaries."""

from __future__ import annotations

import json
from pathlib import Path

from export.intref import IntRef
from export.quantize import ACT_BITS, GATE_FRAC, GATE_ONE, OUT_BITS, TABLE_INTERVALS, QModel
from models.cost import PER_STEP, RELATION, per_decision
from plumbing import markdown
from plumbing.atomic import write_atomic

ROUNDING = (
    "round-half-up: rshr(v, s) = (v + 2^(s-1)) >> s, arithmetic shift, i.e. floor(v / 2^s + 1/2); "
    "ties go towards +inf for both signs (2.5 -> 3, -2.5 -> -2); s < 0 multiplies by 2^-s exactly"
)


def write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(v):
    if hasattr(v, "tolist"):
        return v.tolist()
    raise TypeError(f"not JSON serialisable: {type(v)}")


def calibration(q: QModel, calib_windows: int, overflow: dict[str, dict[str, int]], headroom: int) -> dict:
    """Per-tensor ranges, chosen fracs and overflow counts per evaluated split."""
    tensors = []
    for name, t in q.tensors.items():
        if name == q.graph.tokens:
            continue
        op = next((o for o in q.ops if o.out == name), None)
        rng = q.ranges.get(name, 0.0)
        tensors.append(
            {
                "name": name,
                "op": op.kind if op else "input",
                "module": op.src if op else "input x",
                "width": t.width,
                "bits": t.bits,
                "range": rng,
                "frac": t.frac,
                "scale": 2.0**-t.frac,
                "max_representable": (2 ** (t.bits - 1) - 1) * 2.0**-t.frac,
                "overflow": {s: c.get(name, 0) for s, c in overflow.items()},
            }
        )
    for op in q.ops:
        if op.kind == "lstm":
            cname = op.out + ".c"
            tensors.append(
                {
                    "name": cname,
                    "op": "lstm cell state",
                    "module": op.src,
                    "width": op.a["hidden"],
                    "bits": ACT_BITS,
                    "range": q.ranges.get(cname, 0.0),
                    "frac": op.a["cfrac"],
                    "scale": 2.0 ** -op.a["cfrac"],
                    "max_representable": 32767 * 2.0 ** -op.a["cfrac"],
                    "overflow": {s: c.get(cname, 0) for s, c in overflow.items()},
                }
            )
    weights = []
    for op in q.ops:
        for key, arr in op.p.items():
            frac_key = {"w": "wfrac", "r": "rfrac", "table": "wfrac"}.get(key)
            weights.append(
                {
                    "name": f"{op.out}.{key}",
                    "module": op.src,
                    "shape": list(arr.shape),
                    "bits": 64 if key == "b" else 16,
                    "frac": (op.a[frac_key] if frac_key else None),
                    "max_abs_int": int(abs(arr).max()) if arr.size else 0,
                    "saturated": q.weight_saturation.get(f"{op.out}.{frac_key}", 0) if frac_key else 0,
                }
            )
    clamps = {
        s: {k: v for k, v in c.items() if k.endswith("_clamp") or k == q.graph.tokens} for s, c in overflow.items()
    }
    return {
        "rounding": ROUNDING,
        "formats": {
            "activations": f"int{ACT_BITS}, per-tensor power-of-two scale 2^-frac, saturating",
            "output": f"int{OUT_BITS} logits at frac {q.out_frac}",
            "weights": "int16, per-tensor power-of-two scale",
            "biases": "int64 at the accumulator frac",
            "accumulators": "int64, exact",
            "calibration": f"frac = floor(log2(32767 / (max|v| * 2^{headroom}))) over the float model on the "
            f"training windows, lowered where an op needs a non-negative shift",
            **(
                {
                    "lstm": f"gate pre-activations int16 at frac {GATE_FRAC} (= table domain [-8, 8)); "
                    f"sigmoid/tanh tables of {TABLE_INTERVALS + 1} Q{GATE_ONE} entries over [-8, 8], step "
                    f"1/16, linear interpolation on the low 8 bits; domain clamps are counted as "
                    f"*_clamp (expected, not overflows)"
                }
                if q.tables
                else {}
            ),
        },
        "calibration_windows": calib_windows,
        "headroom_bits": headroom,
        "in_frac": q.in_frac,
        "out_frac": q.out_frac,
        "tensors": tensors,
        "weights": weights,
        "overflow_totals": {
            s: sum(v for k, v in c.items() if not k.endswith("_clamp") and k != q.graph.tokens)
            for s, c in overflow.items()
        },
        "clamps": clamps,
    }


def calibration_md(cal: dict) -> str:
    splits = list(cal["overflow_totals"])
    lines = [
        "# Calibration",
        "",
        f"Rounding: {cal['rounding']}.",
        "",
        *(f"- {k}: {v}" for k, v in cal["formats"].items()),
        "",
        f"Calibrated on {cal['calibration_windows']} training windows; headroom {cal['headroom_bits']} bit(s).",
        "",
        "| tensor | op | module | width | range | frac | max repr. | "
        + " | ".join(f"overflow {s}" for s in splits)
        + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(splits),
    ]
    for t in cal["tensors"]:
        lines.append(
            f"| {t['name']} | {t['op']} | {t['module']} | {t['width']} | {t['range']:.4g} | {t['frac']} | "
            f"{t['max_representable']:.4g} | " + " | ".join(str(t["overflow"].get(s, 0)) for s in splits) + " |"
        )
    lines += ["", "| weights | shape | frac | max abs int | saturated |", "|---|---|---|---|---|"]
    for w in cal["weights"]:
        lines.append(f"| {w['name']} | {w['shape']} | {w['frac']} | {w['max_abs_int']} | {w['saturated']} |")
    lines += [
        "",
        "Overflow totals: " + ", ".join(f"{s}: {n}" for s, n in cal["overflow_totals"].items()),
        "",
        "Clamps (expected, not overflows): " + json.dumps(cal["clamps"]),
        "",
    ]
    return "\n".join(lines)


def parity_md(par: dict) -> str:
    return "\n".join(
        ["# Float parity (torch / onnxruntime / lowered IR)", "", *(f"- {k}: {v}" for k, v in par.items()), ""]
    )


def _cell(v) -> str:
    """A table cell: numbers compact, booleans yes/no, lists and dicts as plain text."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_cell(x) for x in v) or "none"
    if isinstance(v, dict):
        return "; ".join(f"{k} {_cell(x)}" for k, x in v.items())
    return str(v).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list]) -> list[str]:
    return [*markdown.table(header, rows, _cell).split("\n"), ""]


def keyed_table(first: str, rows: dict[str, dict]) -> list[str]:
    """{row name: {column: value}} as a table, columns in first-seen order."""
    cols = list(dict.fromkeys(k for r in rows.values() for k in r))
    return md_table(
        [first, *(c.replace("_", " ") for c in cols)], [[name, *(r.get(c) for c in cols)] for name, r in rows.items()]
    )


def summary_md(rep: dict) -> str:
    """report.md: the export at a glance, as Markdown tables (report.json has the same data)."""
    c = rep.get("c_bit_exact") or {}
    total = c.get("total") if isinstance(c, dict) else None
    par = rep.get("parity") or {}
    ko = rep.get("kernel_object") or {}
    st = rep.get("selftest") or {}
    enc = rep.get("encoder") or {}
    model = [
        ["source", rep["source"]],
        ["C prefix", rep["prefix"]],
        ["arch hash", f"0x{rep['arch_hash']:08x}"],
        [PER_STEP + " (integer model, streaming)", f"{rep['macs']:,}"],
        *(
            [[per_decision(rep["window"]) + " (float model, as evaluate.py counts)", f"{rep['macs_per_decision']:,}"]]
            if rep.get("macs_per_decision") is not None
            else []
        ),
        ["inputs / outputs", f"{rep['n_in']} / {rep['n_out']}"],
        ["window / receptive field", f"{rep['window']} / {rep['receptive_field']}"],
        ["input frac / output frac", f"{rep['in_frac']} / {rep['out_frac']}"],
        ["test vectors", rep["vectors"].get("total")],
        ["self-test vectors", rep["selftest_vectors"]],
        ["self-test output crc32", f"0x{rep['selftest_out_crc32']:08x}"],
    ]
    if rep.get("like"):
        model.append(["like (scales reused from)", rep["like"]["dir"]])
    checks = [
        [
            "torch vs onnxruntime",
            f"max abs diff {_cell(par.get('max_abs_diff_torch_ort'))}, "
            f"decisions agree {_cell(par.get('decision_agreement_torch_ort'))}",
        ],
        [
            "lowered IR vs onnxruntime",
            f"max abs diff {_cell(par.get('max_abs_diff_ir_ort'))}, "
            f"decisions agree {_cell(par.get('decision_agreement_ir_ort'))}",
        ],
        [
            "C vs Python integer reference",
            "not run" if total is None else f"{total['mismatches']} mismatches in {total['vectors']} vectors",
        ],
        [
            "C with params from model.blob",
            "not run"
            if not rep.get("c_bit_exact_blob")
            else f"{rep['c_bit_exact_blob']['mismatches']} mismatches in {rep['c_bit_exact_blob']['vectors']} vectors",
        ],
        ["C self-test", "not run" if not st else f"{'pass' if st.get('ok') else 'FAIL'}: {st.get('output')}"],
        [
            "kernel-safe object",
            "not run"
            if not ko
            else f"{'ok' if ko.get('ok') else 'NOT OK'}: FPU instructions {_cell(ko.get('fpu_instructions'))}, "
            f"undefined symbols {_cell(ko.get('undefined_symbols'))}, text {ko.get('text_size')} B, "
            f"rodata {ko.get('rodata_size')} B, data {ko.get('data_size')} B, bss {ko.get('bss_size')} B",
        ],
    ]
    if enc:
        ce = enc.get("c_bit_exact") or {}
        checks.append(
            [
                "input encoder (slm_encode)",
                f"max error {_cell(enc.get('max_error_lsb'))} LSB"
                + (f", C mismatches {ce.get('mismatches')} in {ce.get('rows')} rows" if ce else ""),
            ]
        )
    lines = [
        f"# Export of {rep['source']}",
        "",
        "## Model",
        "",
        *md_table(["", "value"], model),
        f"{RELATION}.",
        "",
        "## Checks",
        "",
        *md_table(["check", "result"], checks),
    ]
    lines += kernel_md(rep)
    fvi = {}
    for split, r in rep.get("float_vs_int", {}).items():
        for mode in ("window", "stream"):
            if isinstance(r.get(mode), dict):
                fvi[f"{split} ({mode})"] = {"windows": r.get("windows"), **r[mode]}
    if fvi:
        lines += ["## Float model vs integer model", "", *keyed_table("split (evaluation)", fvi)]
    overflows = rep.get("overflow_totals", {})
    lines += [
        "## Overflows (saturations) per split",
        "",
        *md_table(["split", "overflows"], [[k, v] for k, v in overflows.items()]),
    ]
    if any(overflows.values()):
        bits = rep.get("headroom_bits", 0)
        lines += [
            f"Overflows saturate activations and move the logits (see the max logit difference above): export "
            f"again with more headroom, e.g. `headroom={bits + 1}` (now {bits} bit(s) above the calibrated "
            f"ranges; conf/export.yaml, export/quantize.py), at the cost of one bit of resolution per bit.",
            "",
        ]
    streaming = {k: v for k, v in rep.get("streaming", {}).items() if isinstance(v, dict)}
    if streaming:
        lines += ["## Streaming (one step per event) vs full sequence", "", *keyed_table("sequences", streaming)]
    if isinstance(c, dict) and c and total is not None:
        lines += [
            "## C bit-exactness per vector set",
            "",
            *keyed_table("vector set", {k: v for k, v in c.items() if isinstance(v, dict)}),
        ]
    lines += ["## Operators", "", *md_table(["#", "operator"], [[i, op] for i, op in enumerate(rep["ops"])])]
    return "\n".join(lines)


def kernel_md(rep: dict) -> list[str]:
    """The kernel module's verdict, who encodes the inputs, bytes per task and ns per step."""
    lines = []
    km = rep.get("kernel_module")
    if km:
        lines += [
            "## Kernel module (kernel/schedlearn.c, its fair.c hook)",
            "",
            "Servable: yes." if km["ok"] else "Servable: **no** (kernel.push_model refuses this export):",
            "",
            *(f"- {r}" for r in km["reasons"]),
            "",
        ]
    inputs = rep.get("inputs")
    if inputs and inputs.get("encoded_by") == "caller":
        lines += [
            "## Inputs: encoded by the caller",
            "",
            inputs["note"] + ":",
            "",
            *(f"- {r}" for r in inputs["pre_encoded"]),
            "",
        ]
    task = rep.get("per_task_state")
    if task:
        per = "task" if task["window_by"] == "task" or task["caller_bytes"] else "stream"
        rows = [
            ["windows by", task["window_by"]],
            ["model history (carried between steps)", f"{task['history_bytes']} B: {_cell(task['history'])}"],
            ["per-step scratch (one per CPU serves)", f"{task['scratch_bytes']} B"],
            ["sizeof(struct state), gcc", _cell(task["state_struct_bytes"])],
            *([f"caller: {c['field']}", f"{c['bytes']} B: {c['what']}"] for c in task["caller"]),
            [f"**bytes per {per}** (history + caller)", f"**{task['bytes_per_task']}**"],
            [f"bytes per {per} keeping the whole struct", _cell(task["bytes_per_task_whole_struct"])],
        ]
        if task.get("window_replay_bytes_per_task"):
            rows.append(
                [
                    f"bytes per {per} to replay the training window instead (the window's inputs, a slot, "
                    f"the caller's; {rep.get('macs_per_decision', 0):,} MACs per call)",
                    task["window_replay_bytes_per_task"],
                ]
            )
        title = "Per-task state" if per == "task" else f"Streaming state (windows by {task['window_by']})"
        lines += [f"## {title}", "", *md_table(["", "bytes"], rows)]
    ns = rep.get("step_ns")
    if ns:
        lines += [
            "## ns per call of the streaming step (C harness)",
            "",
            f"{ns['what']}; load average {ns['load_average']}.",
            "",
            *keyed_table("task states", {str(ns[k]["tasks"]): ns[k] for k in ("one_task", "interleaved")}),
        ]
    dec = rep.get("decision_ns")
    if dec:
        rows = [
            [
                d["candidates"],
                d["decisions"],
                *(round(d[f"{s}_ns"] / 1000, 1) for s in ("p50", "p99", "mean", "min")),
                *(round(d[f"{s}_ns_per_candidate"]) for s in ("p50", "p99")),
            ]
            for d in dec.values()
            if isinstance(d, dict)
        ]
        lines += [
            "## ns per decision of the candidate scorer (C harness)",
            "",
            f"{dec['what']}; load average {dec.get('load_average')}.",
            "",
            *md_table(
                [
                    "candidates",
                    "decisions",
                    "p50 µs",
                    "p99 µs",
                    "mean µs",
                    "min µs",
                    "p50 ns / candidate",
                    "p99 ns / candidate",
                ],
                rows,
            ),
        ]
    checked = rep.get("c_decisions")
    if checked:
        lines += [
            "## C decisions vs the integer reference's argmax",
            "",
            *keyed_table("candidates per decision", checked),
        ]
    return lines


def overflow_counts(ref: IntRef) -> dict[str, int]:
    return {k: int(v) for k, v in sorted(ref.counts.items())}
