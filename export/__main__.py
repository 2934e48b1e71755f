"""python -m export ckpt_path=PATH out=DIR [key=value ...]

Exports a training checkpoint to integer C (see export/pipeline.py for the outputs). Keys:
  ckpt_path  checkpoint written by train.py (required)
  out        output directory (required)
  dataset    dataset directory (default: the one the checkpoint was trained on)
  splits     comma-separated evaluation splits (default: the run's test splits)
  prefix     C namespace (default slm)
  like       a previous export directory: reuse its scales and self-test inputs so the new
             blob has the same arch hash and loads into a module built with the old header
  vectors    number of test vectors (default 100000)
  headroom   bits of headroom above calibrated activation ranges (default 1)
  verify     build and check the C with gcc (default true)
  seed       random seed of the vector generator (default 0)
"""
from __future__ import annotations

import sys
from pathlib import Path

KEYS = {"ckpt_path", "out", "dataset", "splits", "prefix", "like", "vectors", "headroom", "verify", "seed"}


def parse(argv: list[str]) -> dict[str, str]:
    args = {}
    for a in argv:
        key, sep, value = a.partition("=")
        key = key.lstrip("-").replace("-", "_")
        if not sep or key not in KEYS:
            raise SystemExit(f"bad argument {a!r}: expected key=value with key in {sorted(KEYS)}\n{__doc__}")
        args[key] = value
    missing = {"ckpt_path", "out"} - set(args)
    if missing:
        raise SystemExit(f"missing {sorted(missing)}\n{__doc__}")
    return args


def main(argv: list[str]) -> int:
    a = parse(argv)
    from export import pipeline
    from export.onnx_graph import ExportError
    from export.source import from_checkpoint

    try:
        src = from_checkpoint(a["ckpt_path"], a.get("dataset"), a["splits"].split(",") if a.get("splits") else None)
        rep = pipeline.run(src, Path(a["out"]), prefix=a.get("prefix", "slm"),
                           like=Path(a["like"]) if a.get("like") else None, n_vectors=int(a.get("vectors", 100_000)),
                           headroom=int(a.get("headroom", 1)), verify=a.get("verify", "true").lower() in ("1", "true", "yes"),
                           seed=int(a.get("seed", 0)))
    except ExportError as e:
        print(f"export: {e}", file=sys.stderr)
        return 1
    bad = rep.get("c_bit_exact", {}).get("total", {}).get("mismatches", 0)
    ok_obj = (rep.get("kernel_object") or {}).get("ok", True)
    print(f"[export] wrote {a['out']}: arch 0x{rep['arch_hash']:08x}, {rep['macs']} MACs, C mismatches {bad}, "
          f"kernel-safe object {ok_obj}")
    return 0 if not bad and ok_obj else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
