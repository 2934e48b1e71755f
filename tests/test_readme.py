"""The README's commands name things that exist, and so do those of the docs it points to.

Every command line in the code blocks of README.md, docs/*.md and the stage READMEs is taken apart: `python -m MOD` needs the module,
`python FILE` the file, a Hydra group override (`model=tcn`, `-m task=a,b`) needs
`conf/<group>/<choice>.yaml`, and a path-looking argument needs the file or folder, unless it is
a placeholder (CAPS, `<...>`, `...`) or an output the command creates.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# the pages the README sends readers on to (docs/ holds the commands that used to be in it)
STAGES = ("plumbing", "data/collect", "data/parse", "data/dataset", "data/can_migrate", "models", "evaluation")
STAGES += ("export", "kernel")
DOCS = [README, *sorted((REPO / "docs").glob("*.md")), *(REPO / s / "README.md" for s in STAGES)]
GROUPS = {p.name for p in (REPO / "conf").iterdir() if p.is_dir()}
# arguments that name something a command writes (checked by its own tests, not here)
OUTPUT_FLAGS = {"--out", "out"}
PLACEHOLDER = re.compile(r"[A-Z]{2,}|\b[A-Z]\.|<|\.\.\.|\$|\*|~")


def commands(doc: Path = README) -> list[str]:
    """Command lines in a page's indented or fenced code blocks."""
    lines, fenced = [], False
    for raw in doc.read_text().splitlines():
        if raw.startswith("```"):
            fenced = not fenced
            continue
        if fenced or raw.startswith("    "):
            line = raw.strip()
            if re.match(r"(python3? |make |kernel/|bash |pip |\.venv/bin/)", line):
                lines.append(line)
    return lines


def _strip_comment(line: str) -> str:
    return re.sub(r"\s+#\s.*$", "", line)


def _repo_path_like(tok: str) -> bool:
    return (
        "/" in tok or re.search(r"\.(py|ya?ml|zst|xz|gz|parquet|ckpt|blob|txt|json|sh)$", tok)
    ) and not tok.startswith(("/", "-"))


def problems(line: str) -> list[str]:
    """What a command names that does not exist; `A && B` is checked part by part."""
    line = _strip_comment(line).replace(".venv/bin/", "")  # the environment the set-up makes
    if "&&" in line:
        return [p for part in line.split("&&") for p in problems(part.strip())]
    try:
        toks = shlex.split(line)
    except ValueError as e:
        return [f"unparsable: {e}"]
    out, skip_next = [], False
    if toks[:2] == ["python", "-m"] or toks[:2] == ["python3", "-m"]:
        mod = toks[2]
        if not (
            (REPO / mod.replace(".", "/")).with_suffix(".py").exists()
            or (REPO / mod.replace(".", "/") / "__main__.py").exists()
            or mod in {"pytest", "pip", "venv"}
        ):
            out.append(f"no module {mod}")
        toks = toks[3:]
    elif toks[0] in ("python", "python3") and len(toks) > 1 and toks[1].endswith(".py"):
        if not (REPO / toks[1]).exists():
            out.append(f"no file {toks[1]}")
        toks = toks[2:]
    else:
        toks = toks[1:]
    for tok in toks:
        if skip_next:
            skip_next = False
            continue
        if tok in OUTPUT_FLAGS:
            skip_next = True
            continue
        key, eq, val = tok.lstrip("+").partition("=")
        if eq and key in OUTPUT_FLAGS:
            continue
        if eq and key in GROUPS:
            for choice in val.split(","):
                if choice != "null" and not (REPO / "conf" / key / f"{choice}.yaml").exists():
                    out.append(f"no config conf/{key}/{choice}.yaml")
            continue
        for part in val.strip("[]").split(",") if eq else [tok]:
            if part and _repo_path_like(part) and not PLACEHOLDER.search(part):
                if not (REPO / part).exists():
                    out.append(f"no path {part}")
    return out


def test_readme_has_commands():
    assert len(commands()) >= 20, commands()


@pytest.mark.parametrize("line", commands())
def test_readme_command_names_existing_things(line):
    assert problems(line) == [], line


def test_docs_exist():
    assert [d for d in DOCS if not d.is_file()] == []


@pytest.mark.parametrize(
    "doc,line", [(d, line) for d in DOCS[1:] if d.is_file() for line in commands(d)], ids=lambda v: str(v)[-60:]
)
def test_docs_command_names_existing_things(doc, line):
    assert problems(line) == [], f"{doc.relative_to(REPO)}: {line}"


def test_checker_catches_a_missing_file():
    assert problems("python evaluate.py ckpt_path=X 'traces=[datasets/traces/nope/trace.txt.zst]'")
    assert problems("python train.py model=transformer")
    assert problems("python -m data.nothing")
    assert not problems("python train.py -m model=lstm,tcn task=migration")
    assert problems("python3 -m venv .venv && .venv/bin/pip install -r nope.txt")
