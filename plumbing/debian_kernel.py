"""Debian's sched_ext kernel from trixie-backports, fetched and cached for the qemu guest.

Also, on request, its source tree and a BPF toolchain built from it; nothing is installed on the host.

    python -m plumbing.debian_kernel fetch [--series 7] [--source] [--toolchain] [--jobs 2]
    python -m plumbing.debian_kernel list

The newest `linux-binary-<series>.*-amd64` of trixie-backports whose config has
CONFIG_SCHED_CLASS_EXT=y (the archive keeps only the newest build of each package) is fetched with
`apt-get download` through a private apt state (its own sources.list, lists, cache and an empty
dpkg status under the cache root: the host's apt state is not touched), unpacked with
`dpkg-deb -x` and kept under $SCHEDLEARN_KERNEL_CACHE (default /var/cache/schedlearn) as

    debian-apt/                           the private apt state (sources.list, lists/, cache/)
    debian-<Debian version>/              e.g. debian-7.3.4-1~bpo13+1, renamed into place whole
        kernel.json                       packages, versions, release, sha256s, step timings
        vmlinuz  config  modules.builtin  from linux-binary / linux-base
        modules/<release>/...             only the guest's modules not built in (9p and its
                                          dependencies), decompressed, with their modules.dep
        source/linux-source-<M.m>/        linux-source-<M.m>, on request (fetch --source): the
                                          tree without drivers/, Documentation/, sound/
        toolchain/                        on request (fetch --toolchain): static libbpf
                                          (lib64/libbpf.a, include/bpf/), bin/bpftool (static),
                                          vmlinux.btf (the image's .BTF) and vmlinux.h

Each part is built in a hidden `.NAME.part-<pid>` folder beside its place and renamed in when
complete, under a lock, so a reader sees all of it or nothing. The network is touched only by
`apt-get update` and `apt-get download` (apt_update, download); `find_cached` and `ensure` with a
cached kernel work offline.
"""

from __future__ import annotations

import fcntl
import json
import lzma
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cmp_to_key
from pathlib import Path
from urllib.parse import urlparse

from plumbing import cli, initramfs
from plumbing.atomic import write_atomic, write_json_atomic

PROG = "python -m plumbing.debian_kernel"
DEFAULT_CACHE = Path("/var/cache/schedlearn")
SUITE = "trixie-backports"
MIRROR = os.environ.get("SCHEDLEARN_DEBIAN_MIRROR", "http://deb.debian.org/debian")
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
ARCH = "amd64"
FLAVOUR = "amd64"  # not cloud-amd64 (few drivers) or rt-amd64
DEFAULT_SERIES = "7"
REQUIRED_CONFIG = {"CONFIG_SCHED_CLASS_EXT": "y"}
# Recorded in kernel.json: what the guest work leans on besides sched_ext.
NOTED_CONFIG = (
    "CONFIG_SCHED_CLASS_EXT",
    "CONFIG_DEBUG_INFO_BTF",
    "CONFIG_KPROBES",
    "CONFIG_BPF_SYSCALL",
    "CONFIG_NUMA_BALANCING",
    "CONFIG_SCHED_SMT",
    "CONFIG_VIRTIO_PCI",
    "CONFIG_VIRTIO_CONSOLE",
    "CONFIG_NET_9P_VIRTIO",
    "CONFIG_9P_FS",
)
# The guest collector's modules (data/collect/guest: the 9p share over virtio-pci) and the config
# symbol that says whether each is built in (y), a module (m) or absent.
GUEST_MODULES = {"virtio_pci": "CONFIG_VIRTIO_PCI", "9pnet_virtio": "CONFIG_NET_9P_VIRTIO", "9p": "CONFIG_9P_FS"}
# Not unpacked from linux-source (1.35 of its 1.8 GB): nothing the BPF tools build reads them.
SOURCE_EXCLUDED = ("drivers", "Documentation", "sound")
TOOLCHAIN_RECIPE = 1  # raise when the toolchain build changes: the cached one is rebuilt
CLANG = "clang-19"
LLVM_STRIP = "llvm-strip-19"


class DebianKernelError(RuntimeError):
    """One line, for the user: what is missing or failed, and what to run."""


# ----- versions and listings (pure) -----------------------------------------------------------


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _verrevcmp(a: str, b: str) -> int:
    """dpkg's comparison of an upstream version or a revision."""
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i, j = i + 1, j + 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        first_diff = 0
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i, j = i + 1, j + 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def compare_versions(a: str, b: str) -> int:
    """<0, 0, >0 as Debian version a sorts before, with, after b (`dpkg --compare-versions`)."""

    def split(v: str) -> tuple[int, str, str]:
        epoch, _, rest = v.rpartition(":") if ":" in v else ("0", "", v)
        upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
        return int(epoch or 0), upstream, revision

    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return ea - eb
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)


def parse_stanzas(text: str) -> list[dict[str, str]]:
    """A Packages file (or `apt-cache dumpavail`) as one dict per stanza (continuation lines kept)."""
    out, cur, key = [], {}, None
    for line in text.splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
            cur, key = {}, None
        elif line[0] in " \t" and key:
            cur[key] += "\n" + line
        else:
            key, _, value = line.partition(":")
            cur[key] = value.strip()
    if cur:
        out.append(cur)
    return out


@dataclass(frozen=True)
class Candidate:
    """One linux-binary package of the suite, with the packages that go with it."""

    package: str  # linux-binary-7.3.4+deb13-amd64
    version: str  # 7.3.4-1~bpo13+1
    abi: str  # 7.3.4+deb13
    sha256: str = ""

    @property
    def release(self) -> str:
        """uname -r: 7.3.4+deb13-amd64."""
        return f"{self.abi}-{FLAVOUR}"

    @property
    def base(self) -> str:
        return f"linux-base-{self.release}"

    @property
    def modules(self) -> str:
        return f"linux-modules-{self.release}"

    @property
    def series(self) -> str:
        """MAJOR.MINOR: 7.3 (linux-source-7.3)."""
        return ".".join(self.abi.split("+")[0].split(".")[:2])


def candidates(stanzas: list[dict[str, str]], series: str = DEFAULT_SERIES) -> list[Candidate]:
    """The `linux-binary-<series>.*-amd64` packages, newest first (by Debian version)."""
    pat = re.compile(rf"linux-binary-(?P<abi>{re.escape(series)}(?:\.[0-9]+)+\+[0-9a-z.]+)-(?P<flavour>[0-9a-z-]+)")
    found: dict[str, Candidate] = {}
    for s in stanzas:
        m = pat.fullmatch(s.get("Package", ""))
        if not m or m["flavour"] != FLAVOUR or not s.get("Version"):
            continue
        c = Candidate(s["Package"], s["Version"], m["abi"], s.get("SHA256", ""))
        old = found.get(c.package)
        if old is None or compare_versions(c.version, old.version) > 0:
            found[c.package] = c
    return sorted(found.values(), key=cmp_to_key(lambda a, b: compare_versions(b.version, a.version)))


def parse_config(text: str) -> dict[str, str]:
    """CONFIG_X -> y/m/value, and "n" for `# CONFIG_X is not set`."""
    cfg = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_"):
            k, _, v = line.partition("=")
            cfg[k] = v
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            cfg[line[2:-11]] = "n"
    return cfg


def config_problem(cfg: dict[str, str]) -> str | None:
    """Why this config cannot serve (one phrase), or None."""
    bad = [f"{k}={cfg.get(k, 'n')}" for k, want in REQUIRED_CONFIG.items() if cfg.get(k, "n") != want]
    if not bad:
        return None
    want = ", ".join(f"{k}={v}" for k, v in REQUIRED_CONFIG.items())
    return f"its config has {', '.join(bad)}, not {want}"


def modules_needed(cfg: dict[str, str]) -> list[str]:
    """The guest modules this config builds as modules (=m); built-in (=y) ones need nothing.
    DebianKernelError when one is absent."""
    absent = [f"{sym} ({name})" for name, sym in GUEST_MODULES.items() if cfg.get(sym, "n") not in ("y", "m")]
    if absent:
        raise DebianKernelError(f"the kernel lacks {', '.join(absent)}, which the guest needs")
    return [name for name, sym in GUEST_MODULES.items() if cfg[sym] == "m"]


def modinfo(ko: bytes) -> dict[str, str]:
    """The .modinfo strings of an ELF64 kernel module (name, depends, vermagic, ...)."""
    if ko[:4] != b"\x7fELF" or ko[4] != 2:
        raise DebianKernelError("not an ELF64 kernel module")
    shoff = struct.unpack_from("<Q", ko, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ko, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _, _, _, off, size = struct.unpack_from("<IIQQQQ", ko, shoff + i * shentsize)
        return name, off, size

    _, stroff, _ = section(shstrndx)
    for i in range(shnum):
        name, off, size = section(i)
        end = ko.index(b"\0", stroff + name)
        if ko[stroff + name : end] == b".modinfo":
            out = {}
            for item in ko[off : off + size].split(b"\0"):
                k, sep, v = item.decode(errors="replace").partition("=")
                if sep:
                    out.setdefault(k, v)
            return out
    return {}


def _modname(path: str | Path) -> str:
    return Path(path).name.split(".ko")[0].replace("-", "_")


# ----- the cache --------------------------------------------------------------------------------


def cache_root() -> Path:
    return Path(os.environ.get("SCHEDLEARN_KERNEL_CACHE", DEFAULT_CACHE))


def cache_dir_name(version: str) -> str:
    """The cache key: the exact Debian version of the kernel packages."""
    if not re.fullmatch(r"[0-9A-Za-z.+~:-]+", version) or version.startswith((".", "-")):
        raise DebianKernelError(f"unexpected Debian version {version!r}")
    return f"debian-{version.replace(':', '%3a')}"


@dataclass(frozen=True)
class DebianKernel:
    dir: Path  # $SCHEDLEARN_KERNEL_CACHE/debian-<version>
    version: str  # Debian package version: 7.3.4-1~bpo13+1
    release: str  # uname -r: 7.3.4+deb13-amd64
    package: str  # linux-binary-7.3.4+deb13-amd64
    module_names: tuple[str, ...]  # modules/<release>/<path>.ko, load order (dependencies first)

    @property
    def vmlinuz(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def config(self) -> Path:
        return self.dir / "config"

    @property
    def modules_root(self) -> Path:
        """Like /lib/modules: modules_root/<release>/modules.dep (initramfs.module_order's root)."""
        return self.dir / "modules"

    @property
    def modules_dir(self) -> Path:
        return self.modules_root / self.release

    @property
    def module_files(self) -> list[Path]:
        """The .ko files /init loads, dependencies first ([] when all are built in)."""
        return [self.modules_dir / m for m in self.module_names]

    @property
    def series(self) -> str:
        return ".".join(self.release.split("+")[0].split(".")[:2])

    def meta(self) -> dict:
        """What a run's meta.json (or an A/B report) records of the kernel."""
        return {
            "suite": SUITE,
            "package": self.package,
            "version": self.version,
            "release": self.release,
            "cache_dir": str(self.dir),
        }


def _load(d: Path) -> DebianKernel | None:
    try:
        info = json.loads((d / "kernel.json").read_text())
        k = DebianKernel(d, info["version"], info["release"], info["package"], tuple(info["modules"]))
    except (OSError, ValueError, KeyError):
        return None
    return k if k.vmlinuz.is_file() and all(p.is_file() for p in k.module_files) else None


def find_cached(series: str = DEFAULT_SERIES, root: Path | None = None) -> DebianKernel | None:
    """The newest complete cached kernel whose release starts with `series` (7, 7.3), or None.
    No network: the sibling of plumbing.qemu.find_vmlinuz for these kernels."""
    root = root or cache_root()
    found = [k for d in root.glob("debian-*") if d.is_dir() and (k := _load(d)) is not None]
    found = [k for k in found if k.release.startswith(f"{series}.")]
    if not found:
        return None
    return max(found, key=cmp_to_key(lambda a, b: compare_versions(a.version, b.version)))


def cached_summary(root: Path | None = None) -> list[str]:
    root = root or cache_root()
    out = []
    for d in sorted(root.glob("debian-*")):
        if d.is_dir() and (k := _load(d)):
            parts = [p for p in ("source", "toolchain") if (d / p / f"{p}.json").is_file()]
            out.append(
                f"{k.version} ({k.package}, release {k.release}) in {d}{': ' + ', '.join(parts) if parts else ''}"
            )
    return out


@contextmanager
def _locked(root: Path, name: str) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


@contextmanager
def _part(final: Path) -> Iterator[Path]:
    """A hidden folder beside `final`, renamed to it when the block succeeds, removed otherwise."""
    part = final.parent / f".{final.name}.part-{os.getpid()}"
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    try:
        yield part
        if final.exists():  # an incomplete earlier attempt (no marker): replaced
            shutil.rmtree(final)
        os.rename(part, final)
    finally:
        shutil.rmtree(part, ignore_errors=True)


def _run(cmd: list[str], what: str, cwd: Path | None = None, env: dict | None = None) -> str:
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    except FileNotFoundError:
        raise DebianKernelError(f"{what}: {cmd[0]} not found") from None
    if r.returncode != 0:
        lines = (r.stderr.strip() or r.stdout.strip()).splitlines() or ["no output"]
        first = next((ln for ln in lines if re.search(r"error|^E:|failed|cannot", ln, re.I)), lines[-1])
        raise DebianKernelError(f"{what} failed: {first.strip()[:300]}")
    return r.stdout


# ----- apt (the only network) ------------------------------------------------------------------


def apt_state(root: Path) -> Path:
    """The private apt state under the cache root (sources.list for SUITE only)."""
    state = root / "debian-apt"
    for d in ("lists/partial", "cache/archives/partial", "sources.list.d"):
        (state / d).mkdir(parents=True, exist_ok=True)
    line = f"deb [arch={ARCH} signed-by={KEYRING}] {MIRROR} {SUITE} main\n"
    src = state / "sources.list"
    if not src.is_file() or src.read_text() != line:
        write_atomic(src, line)
    if not (state / "status").exists():
        write_atomic(state / "status", "")
    return state


def apt_options(state: Path) -> list[str]:
    opts = {
        "Dir::Etc::sourcelist": state / "sources.list",
        "Dir::Etc::sourceparts": state / "sources.list.d",
        "Dir::State::Lists": state / "lists",
        "Dir::State::status": state / "status",
        "Dir::Cache": state / "cache",
        "APT::Architectures::": ARCH,
        "APT::Sandbox::User": "root",  # downloads into root's cache folders without warnings
    }
    return [a for k, v in opts.items() for a in ("-o", f"{k}={v}")]


def apt_update(state: Path) -> None:
    if not KEYRING.is_file():
        raise DebianKernelError(f"{KEYRING} missing (Debian: apt-get install debian-archive-keyring)")
    try:
        _run(["apt-get", *apt_options(state), "-q", "update"], "apt-get update")
    except DebianKernelError as e:
        raise DebianKernelError(f"{SUITE} from {MIRROR}: {e} (no network?)") from None
    if not any((state / "lists").glob(f"*{SUITE}*Packages*")):
        raise DebianKernelError(f"apt-get update fetched no {SUITE} package list from {MIRROR} (no network?)")


def available(state: Path) -> list[dict[str, str]]:
    """Every package stanza of the private lists (offline, after apt_update)."""
    return parse_stanzas(_run(["apt-cache", *apt_options(state), "dumpavail"], "apt-cache dumpavail"))


def download(state: Path, packages: list[tuple[str, str]], dest: Path) -> list[Path]:
    """`apt-get download NAME=VERSION...` into dest; the .deb paths in the order asked."""
    dest.mkdir(parents=True, exist_ok=True)
    spec = [f"{n}={v}" for n, v in packages]
    try:
        _run(["apt-get", *apt_options(state), "-q", "download", *spec], "apt-get download", cwd=dest)
    except DebianKernelError as e:
        raise DebianKernelError(f"{e} (no network?)") from None
    out = []
    for n, _ in packages:
        debs = sorted(dest.glob(f"{n}_*.deb"))
        if not debs:
            raise DebianKernelError(f"apt-get download left no {n}_*.deb in {dest}")
        out.append(debs[-1])
    return out


def network_problem(timeout: float = 3.0) -> str | None:
    """Why the mirror looks unreachable (one phrase), or None; a TCP connect, nothing fetched."""
    u = urlparse(MIRROR)
    host, port = u.hostname or "", u.port or (443 if u.scheme == "https" else 80)
    result: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(None)
        except OSError as e:
            result.append(f"{host}:{port} unreachable ({e.strerror or e})")

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 1)
    return result[0] if result else f"{host}:{port} unreachable (no answer in {timeout:g} s)"


# ----- fetch ---------------------------------------------------------------------------------------


def _unpack(deb: Path, into: Path) -> None:
    _run(["dpkg-deb", "-x", str(deb), str(into)], f"dpkg-deb -x {deb.name}")


def _gather_modules(tree: Path, release: str, names: list[str], dest_root: Path) -> list[str]:
    """From an unpacked linux-modules package: `names` and their dependencies, decompressed into
    dest_root/<release>/<same path>.ko with a modules.dep of just them; their load order."""
    mdir = tree / "usr" / "lib" / "modules" / release
    index = {_modname(p): p for p in mdir.rglob("*.ko*")}
    if not index:
        raise DebianKernelError(f"no kernel modules in {mdir}")
    out_dir = dest_root / release
    deps: dict[str, list[str]] = {}  # relative .ko path -> relative .ko paths it needs
    todo, seen = [n.replace("-", "_") for n in names], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name not in index:
            raise DebianKernelError(f"kernel module {name} not in the {release} modules package")
        src = index[name]
        data = lzma.decompress(src.read_bytes()) if src.suffix == ".xz" else src.read_bytes()
        rel = str(src.relative_to(mdir)).removesuffix(".xz")
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / rel).write_bytes(data)
        needs = [d.replace("-", "_") for d in modinfo(data).get("depends", "").split(",") if d]
        deps[rel] = needs
        todo.extend(needs)
    by_name = {_modname(rel): rel for rel in deps}
    dep_lines = "".join(f"{rel}: {' '.join(by_name[n] for n in needs)}\n" for rel, needs in sorted(deps.items()))
    write_atomic(out_dir / "modules.dep", dep_lines)
    order = initramfs.module_order(release, names, dest_root)
    return [str(p.relative_to(out_dir)) for p in order]


def _fetch_one(
    c: Candidate, state: Path, root: Path, cfg_text: str, base_deb: Path, t: dict[str, float], log
) -> DebianKernel:
    """Everything but the linux-base download (done by fetch for the config check; its time in t)."""
    final = root / cache_dir_name(c.version)
    with _part(final) as part:
        work = part / ".work"
        t0 = time.monotonic()
        (binary_deb,) = download(state, [(c.package, c.version)], work)
        t["download_binary_s"] = time.monotonic() - t0
        t0 = time.monotonic()
        for deb in (binary_deb, base_deb):
            _unpack(deb, work / "x")
        mdirs = list((work / "x" / "usr" / "lib" / "modules").iterdir())
        if len(mdirs) != 1 or not (mdirs[0] / "vmlinuz").is_file():
            raise DebianKernelError(f"{c.package} holds no usr/lib/modules/<release>/vmlinuz")
        release = mdirs[0].name
        for name in ("vmlinuz", "config", "modules.builtin"):
            if (mdirs[0] / name).is_file():
                shutil.copyfile(mdirs[0] / name, part / name)
        t["unpack_s"] = time.monotonic() - t0
        cfg = parse_config(cfg_text)
        needed = modules_needed(cfg)
        modules: list[str] = []
        if needed:
            log(f"debian_kernel: {', '.join(needed)} are modules in {release}: fetching {c.modules} (~107 MB)")
            t0 = time.monotonic()
            (mod_deb,) = download(state, [(c.modules, c.version)], work)
            t["download_modules_s"] = time.monotonic() - t0
            t0 = time.monotonic()
            _unpack(mod_deb, work / "m")
            modules = _gather_modules(work / "m", release, needed, part / "modules")
            t["modules_s"] = time.monotonic() - t0
        shutil.rmtree(work)
        info = {
            "suite": SUITE,
            "mirror": MIRROR,
            "package": c.package,
            "version": c.version,
            "release": release,
            "base_package": c.base,
            "modules_package": c.modules if needed else None,
            "package_sha256": c.sha256,
            "modules": modules,
            "modules_built_in": [n for n in GUEST_MODULES if n not in needed],
            "config": {k: cfg.get(k, "n") for k in NOTED_CONFIG},
            "seconds": {k: round(v, 2) for k, v in t.items()},
            "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_json_atomic(part / "kernel.json", info)
    k = _load(final)
    if k is None:
        raise DebianKernelError(f"{final} is incomplete after the fetch")
    return k


def fetch(series: str = DEFAULT_SERIES, root: Path | None = None, log=print) -> DebianKernel:
    """Refresh the private lists and cache the newest `linux-binary-<series>.*-amd64` with
    CONFIG_SCHED_CLASS_EXT=y (a no-op, apart from the refresh, when it is cached already)."""
    root = root or cache_root()
    if why := cli.unwritable(root / "x"):
        raise DebianKernelError(f"kernel cache {root}: {why} (set SCHEDLEARN_KERNEL_CACHE)")
    with _locked(root, "debian-kernel"):  # one fetcher at a time, whatever the series
        state = apt_state(root)
        apt_update(state)
        cands = candidates(available(state), series)
        if not cands:
            raise DebianKernelError(f"no linux-binary-{series}.*-{FLAVOUR} in {SUITE} ({MIRROR})")
        refused = []
        for c in cands:
            hit = _load(root / cache_dir_name(c.version))
            if hit is not None:
                return hit
            with _scratch(root) as tmp:
                t0 = time.monotonic()
                (base_deb,) = download(state, [(c.base, c.version)], tmp)
                _unpack(base_deb, tmp / "x")
                seconds = {"download_base_s": time.monotonic() - t0}
                cfgs = list((tmp / "x" / "usr" / "lib" / "modules").glob("*/config"))
                if len(cfgs) != 1:
                    raise DebianKernelError(f"{c.base} holds no usr/lib/modules/<release>/config")
                cfg_text = cfgs[0].read_text(errors="replace")
                if why := config_problem(parse_config(cfg_text)):
                    refused.append(f"{c.package} {c.version}: {why}")
                    log(f"debian_kernel: skipping {c.package} {c.version}: {why}")
                    continue
                log(f"debian_kernel: fetching {c.package} {c.version} ({SUITE}) into {root}")
                return _fetch_one(c, state, root, cfg_text, base_deb, seconds, log)
        raise DebianKernelError(
            f"no linux-binary-{series}.*-{FLAVOUR} in {SUITE} has CONFIG_SCHED_CLASS_EXT=y ({'; '.join(refused)})"
        )


@contextmanager
def _scratch(root: Path) -> Iterator[Path]:
    tmp = root / f".debian-scratch-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch_command(series: str) -> str:
    return f"{PROG} fetch --series {series}"


def ensure(series: str = DEFAULT_SERIES, root: Path | None = None, log=print) -> DebianKernel:
    """The newest cached kernel of `series`, fetching one first only when none is cached."""
    return find_cached(series, root) or fetch(series, root, log)


# ----- source and BPF toolchain (on request) --------------------------------------------------------


def source(kernel: DebianKernel, root: Path | None = None, log=print) -> Path:
    """The unpacked linux-source-<M.m> of exactly the kernel's Debian version (fetched once)."""
    name = f"linux-source-{kernel.series}"
    final = kernel.dir / "source"
    tree = final / name

    def done() -> bool:
        try:
            info = json.loads((final / "source.json").read_text())
        except (OSError, ValueError):
            return False
        return info.get("excluded") == list(SOURCE_EXCLUDED) and (tree / "Makefile").is_file()

    if done():
        return tree
    root = root or cache_root()
    with _locked(root, "debian-kernel"):
        if done():
            return tree
        state = apt_state(root)
        apt_update(state)
        have = [s.get("Version") for s in available(state) if s.get("Package") == name]
        if kernel.version not in have:
            raise DebianKernelError(
                f"{SUITE} has {name} {', '.join(v or '?' for v in have) or 'not at all'}, not {kernel.version} of "
                f"the cached kernel (the archive keeps only the newest: {fetch_command(kernel.series)} --source)"
            )
        t: dict[str, float] = {}
        with _part(final) as part:
            log(f"debian_kernel: fetching {name} {kernel.version} (~167 MB) into {final}")
            t0 = time.monotonic()
            (deb,) = download(state, [(name, kernel.version)], part / ".work")
            t["download_s"] = time.monotonic() - t0
            t0 = time.monotonic()
            _unpack(deb, part / ".work" / "x")
            tars = list((part / ".work" / "x" / "usr" / "src").glob(f"{name}.tar.*"))
            if len(tars) != 1:
                raise DebianKernelError(f"{name} holds no usr/src/{name}.tar.*")
            excl = [f"--exclude={name}/{d}" for d in SOURCE_EXCLUDED]
            _run(["nice", "-n", "10", "tar", "-x", "-f", str(tars[0]), "-C", str(part), *excl], f"unpacking {name}")
            shutil.rmtree(part / ".work")
            t["unpack_s"] = time.monotonic() - t0
            write_json_atomic(
                part / "source.json",
                {
                    "package": name,
                    "version": kernel.version,
                    "excluded": list(SOURCE_EXCLUDED),
                    "seconds": {k: round(v, 2) for k, v in t.items()},
                },
            )
    return tree


@dataclass(frozen=True)
class Toolchain:
    dir: Path  # debian-<version>/toolchain

    @property
    def libbpf_a(self) -> Path:
        return self.dir / "libbpf" / "lib64" / "libbpf.a"

    @property
    def libbpf_include(self) -> Path:
        """-I this for <bpf/libbpf.h>, <bpf/bpf_helpers.h>."""
        return self.dir / "libbpf" / "include"

    @property
    def bpftool(self) -> Path:
        return self.dir / "bin" / "bpftool"

    @property
    def vmlinux_h(self) -> Path:
        return self.dir / "vmlinux.h"

    @property
    def vmlinux_btf(self) -> Path:
        """The kernel image's raw .BTF (bpftool and libbpf read it as a BTF file)."""
        return self.dir / "vmlinux.btf"


def toolchain_problem() -> str | None:
    """The host tools the toolchain build needs, missing ones named with their package."""
    need = {
        "make": "make",
        "gcc": "gcc",
        CLANG: "clang-19",
        LLVM_STRIP: "llvm-19",
        "objcopy": "binutils",
        "readelf": "binutils",
        "zstd": "zstd",
        "pkg-config": "pkg-config",
    }
    missing = sorted({pkg for exe, pkg in need.items() if shutil.which(exe) is None})
    for header, pkg in (("/usr/include/gelf.h", "libelf-dev"), ("/usr/include/zlib.h", "zlib1g-dev")):
        if not Path(header).exists():
            missing.append(pkg)
    return f"missing for the BPF toolchain: apt-get install {' '.join(sorted(set(missing)))}" if missing else None


def toolchain(kernel: DebianKernel, root: Path | None = None, jobs: int = 2, log=print) -> Toolchain:
    """Static libbpf, a static bpftool and vmlinux.h, built from the kernel's own source tree and
    cached in debian-<version>/toolchain (built once, `nice -n 10`, make -j`jobs`)."""
    tc = Toolchain(kernel.dir / "toolchain")

    def done() -> bool:
        try:
            info = json.loads((tc.dir / "toolchain.json").read_text())
        except (OSError, ValueError):
            return False
        return info.get("recipe") == TOOLCHAIN_RECIPE and all(
            p.is_file() for p in (tc.libbpf_a, tc.bpftool, tc.vmlinux_h, tc.vmlinux_btf)
        )

    if done():
        return tc
    if why := toolchain_problem():
        raise DebianKernelError(why)
    tree = source(kernel, root, log)
    root = root or cache_root()
    with _locked(root, f"debian-{kernel.version}-toolchain"):
        if done():
            return tc
        t: dict[str, float] = {}
        nice = ["nice", "-n", "10"]
        with _part(tc.dir) as part:
            obj = part / ".obj"
            for d in ("libbpf", "bpftool"):  # the tools' Makefiles want OUTPUT to exist
                (obj / d).mkdir(parents=True)
            log(f"debian_kernel: building libbpf, bpftool and vmlinux.h for {kernel.release} (minutes)")
            t0 = time.monotonic()
            _run(
                [
                    *nice,
                    "make",
                    "-s",
                    "-C",
                    str(tree / "tools" / "lib" / "bpf"),
                    f"-j{jobs}",
                    "BUILD_STATIC_ONLY=1",
                    f"OUTPUT={obj / 'libbpf'}/",
                    f"DESTDIR={part / 'libbpf'}",
                    "prefix=",
                    "install",
                ],
                "make libbpf",
            )
            for so in (part / "libbpf").rglob("libbpf.so*"):  # static only: nothing links the .so by mistake
                so.unlink()
            t["libbpf_s"] = time.monotonic() - t0
            t0 = time.monotonic()
            vmlinux = obj / "vmlinux"
            with open(vmlinux, "wb") as fh:
                r = subprocess.run(
                    [str(tree / "scripts" / "extract-vmlinux"), str(kernel.vmlinuz)], stdout=fh, stderr=subprocess.PIPE
                )
            if r.returncode != 0 or vmlinux.stat().st_size == 0:
                raise DebianKernelError(f"extract-vmlinux {kernel.vmlinuz} failed: {r.stderr.decode().strip()[:200]}")
            _run(["objcopy", "--dump-section", f".BTF={part / 'vmlinux.btf'}", str(vmlinux)], "objcopy .BTF")
            vmlinux.unlink()
            t["extract_btf_s"] = time.monotonic() - t0
            t0 = time.monotonic()
            make_bpftool = [
                *nice,
                "make",
                "-s",
                "-C",
                str(tree / "tools" / "bpf" / "bpftool"),
                f"-j{jobs}",
                f"OUTPUT={obj / 'bpftool'}/",
                f"CLANG={CLANG}",
                f"LLVM_STRIP={LLVM_STRIP}",
                f"VMLINUX_BTF={part / 'vmlinux.btf'}",
            ]
            static = True
            try:
                _run([*make_bpftool, "EXTRA_LDFLAGS=-static"], "make bpftool (static)")
            except DebianKernelError as e:
                log(f"debian_kernel: {e}; building bpftool dynamically linked")
                shutil.rmtree(obj / "bpftool", ignore_errors=True)
                (obj / "bpftool").mkdir()
                _run(make_bpftool, "make bpftool")
                static = False
            (part / "bin").mkdir()
            shutil.copyfile(obj / "bpftool" / "bpftool", part / "bin" / "bpftool")
            os.chmod(part / "bin" / "bpftool", 0o755)
            _run(["strip", str(part / "bin" / "bpftool")], "strip bpftool")
            t["bpftool_s"] = time.monotonic() - t0
            t0 = time.monotonic()
            header = _run(
                [str(part / "bin" / "bpftool"), "btf", "dump", "file", str(part / "vmlinux.btf"), "format", "c"],
                "bpftool btf dump",
            )
            if "struct sched_ext_ops {" not in header:
                raise DebianKernelError(f"vmlinux.h of {kernel.release} has no struct sched_ext_ops")
            write_atomic(part / "vmlinux.h", header)
            t["vmlinux_h_s"] = time.monotonic() - t0
            shutil.rmtree(obj)
            version = _run([str(part / "bin" / "bpftool"), "version"], "bpftool version").splitlines()
            write_json_atomic(
                part / "toolchain.json",
                {
                    "recipe": TOOLCHAIN_RECIPE,
                    "kernel_version": kernel.version,
                    "release": kernel.release,
                    "bpftool": version[:2],
                    "bpftool_static": static,
                    "clang": CLANG,
                    "jobs": jobs,
                    "seconds": {k: round(v, 2) for k, v in t.items()},
                },
            )
    return tc


# ----- CLI ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = cli.ArgParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=cli.ArgParser)
    f = sub.add_parser("fetch", help=f"cache the newest sched_ext kernel of {SUITE} (network)")
    f.add_argument("--series", default=DEFAULT_SERIES, help=f"version prefix, e.g. 7 or 7.3 (default {DEFAULT_SERIES})")
    f.add_argument("--source", action="store_true", help="also its linux-source tree (~167 MB download)")
    f.add_argument(
        "--toolchain", action="store_true", help="also static libbpf, bpftool and vmlinux.h (implies --source)"
    )
    f.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="make -j for the toolchain")
    sub.add_parser("list", help="the cached kernels (no network)")
    args = ap.parse_args(argv)
    root = cache_root()
    if args.cmd == "list":
        lines = cached_summary(root)
        print("\n".join(lines) if lines else f"no Debian kernel cached in {root} ({fetch_command('7.3')})")
        return 0
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", args.series):
        return cli.fail(PROG, f"--series {args.series!r}: expected MAJOR or MAJOR.MINOR, e.g. 7 or 7.3", 2)
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    try:
        k = fetch(args.series, root, log)
        info = json.loads((k.dir / "kernel.json").read_text())
        mods = f"modules {', '.join(Path(m).name for m in k.module_names)}" if k.module_names else "no modules"
        print(f"kernel: Debian {k.version} ({k.package}, release {k.release}): {k.vmlinuz}, {mods}")
        print(f"  fetch seconds: {info['seconds']}")
        if args.source or args.toolchain:
            tree = source(k, root, log)
            print(f"source: {tree}  {json.loads((tree.parent / 'source.json').read_text())['seconds']}")
        if args.toolchain:
            tc = toolchain(k, root, args.jobs, log)
            secs = json.loads((tc.dir / "toolchain.json").read_text())["seconds"]
            print(f"toolchain: {tc.libbpf_a}, {tc.bpftool}, {tc.vmlinux_h}  {secs}")
    except DebianKernelError as e:
        return cli.fail(PROG, str(e))
    except OSError as e:
        return cli.fail(PROG, cli.os_error(e))
    except KeyboardInterrupt:
        return cli.interrupted(PROG, "partial downloads removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
