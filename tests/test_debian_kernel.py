"""plumbing.debian_kernel: Debian's sched_ext kernel from trixie-backports, fetched into a cache and
booted under qemu.

The unit tests need no network: the apt layer (apt_update, available, download) and dpkg-deb are
replaced by fakes that hand over folders shaped like the unpacked packages. The guest test boots
the cached 7.3 kernel (fetching it first when the mirror answers; about 120 MB) with a busybox
initramfs: sched_ext is there and disabled, BTF is there, and the cached 9p modules load and mount
a share. Outside CI a missing kernel without network skips; under SCHEDLEARN_CI=1 it fails.
"""

import json
import lzma
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from plumbing import debian_kernel as dk
from plumbing import initramfs, qemu
from tests.conftest import require

SCX = "CONFIG_SCHED_CLASS_EXT=y\n"
MODS = "CONFIG_VIRTIO_PCI=y\nCONFIG_NET_9P_VIRTIO=m\nCONFIG_9P_FS=m\n"


def stanza(package: str, version: str, **extra: str) -> str:
    fields = {"Package": package, "Version": version, "Architecture": "amd64", **extra}
    return "".join(f"{k}: {v}\n" for k, v in fields.items()) + "\n"


LISTING = "".join(
    [
        stanza("linux-binary-7.2.12+deb13-amd64", "7.2.12-1~bpo13+1"),
        stanza("linux-binary-7.3.4+deb13-amd64", "7.3.4-1~bpo13+1", SHA256="ab" * 32),
        stanza("linux-binary-7.3.4+deb13-cloud-amd64", "7.3.4-1~bpo13+1"),
        stanza("linux-binary-7.3.4+deb13-rt-amd64", "7.3.4-1~bpo13+1"),
        stanza("linux-binary-unsigned-7.3.4+deb13-amd64", "7.3.4-1~bpo13+1"),
        stanza("linux-binary-6.19.14+deb13-amd64", "6.19.14-1~bpo13+1"),
        stanza("linux-binary-7.10.1+deb13-amd64", "7.10.1-1~bpo13+1", Description="x\n more"),
        stanza("linux-image-7.3.4+deb13-amd64", "7.3.4-1~bpo13+1"),
        stanza("linux-source-7.3", "7.3.4-1~bpo13+1"),
    ]
)


# ----- versions, listing, config -----------------------------------------------------------------


PAIRS = [
    ("7.3.4-1~bpo13+1", "7.2.12-1~bpo13+1"),
    ("7.10.1-1~bpo13+1", "7.3.4-1~bpo13+1"),
    ("7.3.4-1", "7.3.4-1~bpo13+1"),
    ("7.3.4-2~bpo13+1", "7.3.4-1~bpo13+1"),
    ("1.0", "1.0~rc1"),
    ("1:0.1", "9.9"),
    ("1.0a", "1.0"),
    ("1.0+b1", "1.0"),
    ("1.01", "1.1"),  # equal: leading zeros do not count
]


def test_compare_versions_follows_dpkg():
    for a, b in PAIRS:
        got = dk.compare_versions(a, b)
        want = 0 if a == "1.01" else 1
        assert (got > 0) - (got < 0) == want, (a, b)
        assert (dk.compare_versions(b, a) < 0) == (want == 1), (b, a)
    assert dk.compare_versions("7.3.4-1~bpo13+1", "7.3.4-1~bpo13+1") == 0
    if shutil.which("dpkg"):  # the reference, where it is installed
        for a, b in PAIRS:
            for op, ok in (("gt", dk.compare_versions(a, b) > 0), ("eq", dk.compare_versions(a, b) == 0)):
                r = subprocess.run(["dpkg", "--compare-versions", a, op, b])
                assert (r.returncode == 0) == ok, (a, op, b)


def test_candidates_are_the_amd64_flavour_of_the_series_newest_first():
    stanzas = dk.parse_stanzas(LISTING)
    assert stanzas[6]["Description"] == "x\n more"  # continuation lines stay with their field
    got = dk.candidates(stanzas, "7")
    assert [c.package for c in got] == [
        "linux-binary-7.10.1+deb13-amd64",  # 7.10 sorts after 7.3 (numbers, not text)
        "linux-binary-7.3.4+deb13-amd64",
        "linux-binary-7.2.12+deb13-amd64",
    ]
    (c,) = dk.candidates(stanzas, "7.3")  # not cloud, rt, unsigned or linux-image
    assert (c.version, c.abi, c.release, c.series) == ("7.3.4-1~bpo13+1", "7.3.4+deb13", "7.3.4+deb13-amd64", "7.3")
    assert (c.base, c.modules, c.sha256) == (
        "linux-base-7.3.4+deb13-amd64",
        "linux-modules-7.3.4+deb13-amd64",
        "ab" * 32,
    )
    assert [c.abi for c in dk.candidates(stanzas, "7.1")] == []  # 7.1 is not a prefix of 7.10
    assert dk.candidates(stanzas, "8") == []


def test_config_check_and_modules_needed():
    assert dk.config_problem(dk.parse_config(SCX)) is None
    why = dk.config_problem(dk.parse_config("# CONFIG_SCHED_CLASS_EXT is not set\n"))
    assert why == "its config has CONFIG_SCHED_CLASS_EXT=n, not CONFIG_SCHED_CLASS_EXT=y"
    assert dk.modules_needed(dk.parse_config(MODS)) == ["9pnet_virtio", "9p"]
    assert dk.modules_needed(dk.parse_config(MODS.replace("=m", "=y"))) == []
    with pytest.raises(dk.DebianKernelError, match=r"lacks CONFIG_9P_FS \(9p\)"):
        dk.modules_needed(dk.parse_config("CONFIG_VIRTIO_PCI=y\nCONFIG_NET_9P_VIRTIO=m\n# CONFIG_9P_FS is not set\n"))


def test_cache_key_is_the_exact_debian_version():
    assert dk.cache_dir_name("7.3.4-1~bpo13+1") == "debian-7.3.4-1~bpo13+1"
    assert dk.cache_dir_name("1:7.3.4-1") == "debian-1%3a7.3.4-1"
    for bad in ("../x", "7.3 4", ""):
        with pytest.raises(dk.DebianKernelError):
            dk.cache_dir_name(bad)


# ----- fetch with a fake archive ------------------------------------------------------------------


def fake_module(name: str, depends: str) -> bytes:
    """A minimal ELF64 with a .modinfo section (what modinfo() reads), xz-compressed like Debian's."""
    info = f"license=GPL\0name={name}\0depends={depends}\0".encode()
    shstr = b"\0.modinfo\0.shstrtab\0"
    info_off, str_off = 64, 64 + len(info)
    shoff = (str_off + len(shstr) + 7) & ~7
    head = (
        b"\x7fELF\x02\x01\x01" + b"\0" * 9 + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 2)
    )
    body = head + info + shstr + b"\0" * (shoff - str_off - len(shstr))
    sh = [struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)]
    sh.append(struct.pack("<IIQQQQIIQQ", 1, 1, 2, 0, info_off, len(info), 0, 0, 1, 0))
    sh.append(struct.pack("<IIQQQQIIQQ", 10, 3, 0, 0, str_off, len(shstr), 0, 0, 1, 0))
    return lzma.compress(body + b"".join(sh), format=lzma.FORMAT_XZ)


def fake_archive(tmp_path: Path, versions: dict[str, str]) -> dict[str, Path]:
    """Unpacked 'packages' (folders) per (name=version): binary, base (config) and modules."""
    pkgs = {}
    for version, config in versions.items():
        abi = version.split("-")[0] + "+deb13"
        rel = f"{abi}-amd64"
        for kind in ("binary", "base", "modules"):
            d = tmp_path / "archive" / f"{kind}-{version}"
            mdir = d / "usr" / "lib" / "modules" / rel
            mdir.mkdir(parents=True)
            if kind == "binary":
                (mdir / "vmlinuz").write_bytes(b"MZ kernel " + version.encode())
            elif kind == "base":
                (mdir / "config").write_text(config)
                (mdir / "modules.builtin").write_text("kernel/drivers/virtio/virtio_pci.ko\n")
            else:
                for path, deps in {
                    "kernel/fs/9p/9p.ko.xz": "9pnet,netfs",
                    "kernel/net/9p/9pnet.ko.xz": "netfs",  # as in 7.3.4
                    "kernel/net/9p/9pnet_virtio.ko.xz": "9pnet",
                    "kernel/fs/netfs/netfs.ko.xz": "",
                    "kernel/drivers/gpu/drm/huge.ko.xz": "",
                }.items():
                    (mdir / path).parent.mkdir(parents=True, exist_ok=True)
                    (mdir / path).write_bytes(fake_module(Path(path).name.split(".")[0], deps))
            pkgs[f"linux-{kind}-{rel}={version}"] = d
    return pkgs


@pytest.fixture
def archive(tmp_path, monkeypatch):
    """Two 7.3 builds in the 'suite'; the test sets their configs. Calls are logged."""
    calls: list[str] = []

    def install(versions: dict[str, str]) -> None:
        pkgs = fake_archive(tmp_path, versions)
        listing = "".join(stanza(f"linux-binary-{v.split('-')[0]}+deb13-amd64", v) for v in versions)
        monkeypatch.setattr(dk, "apt_update", lambda state: calls.append("update"))
        monkeypatch.setattr(dk, "available", lambda state: dk.parse_stanzas(listing))

        def download(state, packages, dest):
            dest.mkdir(parents=True, exist_ok=True)
            calls.extend(f"download {n}={v}" for n, v in packages)
            return [pkgs[f"{n}={v}"] for n, v in packages]

        monkeypatch.setattr(dk, "download", download)
        monkeypatch.setattr(dk, "_unpack", lambda deb, into: shutil.copytree(deb, into, dirs_exist_ok=True))

    install.calls = calls
    return install


def test_fetch_caches_the_newest_build_with_its_modules(tmp_path, archive):
    archive({"7.3.4-1~bpo13+1": SCX + MODS, "7.3.5-1~bpo13+1": SCX + MODS})
    root = tmp_path / "cache"
    assert dk.find_cached("7.3", root) is None
    k = dk.fetch("7", root, log=lambda m: None)
    assert (k.version, k.release, k.package) == (
        "7.3.5-1~bpo13+1",
        "7.3.5+deb13-amd64",
        "linux-binary-7.3.5+deb13-amd64",
    )
    assert k.dir == root / "debian-7.3.5-1~bpo13+1" and k.vmlinuz.read_bytes() == b"MZ kernel 7.3.5-1~bpo13+1"
    assert "CONFIG_SCHED_CLASS_EXT=y" in k.config.read_text()
    # only the guest's modules and their dependencies, decompressed, dependencies first
    assert [Path(m).name for m in k.module_names] == ["netfs.ko", "9pnet.ko", "9pnet_virtio.ko", "9p.ko"]
    assert sorted(p.name for p in k.modules_dir.rglob("*.ko")) == sorted(Path(m).name for m in k.module_names)
    assert all(f.read_bytes()[:4] == b"\x7fELF" for f in k.module_files)
    order = initramfs.module_order(k.release, ["9pnet_virtio", "9p"], k.modules_root)  # its modules.dep
    assert [p.name for p in order] == [Path(m).name for m in k.module_names]
    info = json.loads((k.dir / "kernel.json").read_text())
    assert info["modules_built_in"] == ["virtio_pci"] and info["config"]["CONFIG_SCHED_CLASS_EXT"] == "y"
    assert set(info["seconds"]) >= {"download_base_s", "download_binary_s", "download_modules_s", "unpack_s"}
    assert k.meta()["version"] == "7.3.5-1~bpo13+1" and k.meta()["suite"] == "trixie-backports"
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [
        "debian-7.3.5-1~bpo13+1",
        "debian-apt",
    ]  # nothing partial, no .deb kept
    assert not [p for p in root.iterdir() if ".part-" in p.name or "scratch" in p.name]
    # offline now: found in the cache; a second fetch only refreshes the lists
    assert dk.find_cached("7.3", root) == k == dk.ensure("7.3", root)
    n = len(archive.calls)
    assert dk.fetch("7", root, log=lambda m: None) == k and archive.calls[n:] == ["update"]


def test_fetch_skips_a_build_without_sched_ext_and_refuses_when_none_has_it(tmp_path, archive):
    archive({"7.3.4-1~bpo13+1": SCX + MODS, "7.3.5-1~bpo13+1": "# CONFIG_SCHED_CLASS_EXT is not set\n" + MODS})
    logged: list[str] = []
    k = dk.fetch("7.3", tmp_path / "cache", log=logged.append)
    assert k.version == "7.3.4-1~bpo13+1"
    assert any("skipping linux-binary-7.3.5+deb13-amd64" in m and "CONFIG_SCHED_CLASS_EXT=n" in m for m in logged)

    archive({"7.3.6-1~bpo13+1": "CONFIG_SCHED_CLASS_EXT=m\n" + MODS})
    with pytest.raises(dk.DebianKernelError) as e:
        dk.fetch("7.3", tmp_path / "cache2", log=lambda m: None)
    msg = str(e.value)
    assert "\n" not in msg and "has CONFIG_SCHED_CLASS_EXT=y" in msg and "CONFIG_SCHED_CLASS_EXT=m" in msg
    assert not (tmp_path / "cache2" / "debian-7.3.6-1~bpo13+1").exists()
    assert not [p for p in (tmp_path / "cache2").iterdir() if ".part-" in p.name or "scratch" in p.name]


def test_all_built_in_needs_no_modules_package(tmp_path, archive):
    archive({"7.3.4-1~bpo13+1": SCX + MODS.replace("=m", "=y")})
    k = dk.fetch("7.3", tmp_path / "cache", log=lambda m: None)
    assert k.module_names == () and k.module_files == []
    assert not any("linux-modules" in c for c in archive.calls)


def test_find_cached_ignores_incomplete_folders_and_picks_the_newest(tmp_path, archive):
    archive({"7.3.4-1~bpo13+1": SCX + MODS})
    root = tmp_path / "cache"
    k = dk.fetch("7.3", root, log=lambda m: None)
    newer = root / "debian-7.3.9-1~bpo13+1"
    shutil.copytree(k.dir, newer)
    (newer / "kernel.json").unlink()  # an interrupted fetch: not a kernel
    assert dk.find_cached("7.3", root) == k and dk.find_cached("6", root) is None
    info = json.loads((k.dir / "kernel.json").read_text())
    info.update(version="7.3.9-1~bpo13+1")
    (newer / "kernel.json").write_text(json.dumps(info))
    assert dk.find_cached("7", root).version == "7.3.9-1~bpo13+1"
    assert len(dk.cached_summary(root)) == 2


def test_cli_errors_are_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SCHEDLEARN_KERNEL_CACHE", str(tmp_path))
    assert dk.main(["fetch", "--series", "seven"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == "python -m plumbing.debian_kernel: error: --series 'seven': expected MAJOR or MAJOR.MINOR, e.g. 7 or 7.3"
    )

    def offline(state):
        raise dk.DebianKernelError("trixie-backports from http://x: apt-get update failed: E: no (no network?)")

    monkeypatch.setattr(dk, "apt_update", offline)
    assert dk.main(["fetch", "--series", "7.3"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("python -m plumbing.debian_kernel: error: ") and "no network" in err
    assert dk.main(["list"]) == 0 and "fetch --series 7.3" in capsys.readouterr().out


# ----- the real kernel under qemu ------------------------------------------------------------------


def cached_or_fetched(series: str = "7.3") -> dk.DebianKernel:
    """The cached kernel, fetched first when the mirror answers; skip (fail in CI) otherwise."""
    k = dk.find_cached(series)
    if k is None:
        why = dk.network_problem()
        require(why is None, f"Debian {series} kernel not cached in {dk.cache_root()} and {why}")
        try:
            k = dk.fetch(series)
        except dk.DebianKernelError as e:
            require(False, f"fetching Debian's {series} kernel: {e}")
    return k


GUEST_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "K-RELEASE $(uname -r)"
echo "K-SCX $(cat /sys/kernel/sched_ext/state 2>&1)"
[ -f /sys/kernel/btf/vmlinux ] && echo "K-BTF yes" || echo "K-BTF no"
echo "K-CMT $(grep -c ' can_migrate_task$' /proc/kallsyms)"
for m in $(cat /modules.order); do insmod "/modules/$m" || echo "K-INSMOD-FAILED $m"; done
mkdir -p /out
mount -t 9p -o trans=virtio,version=9p2000.L out /out && echo hello > /out/guest.txt && umount /out
echo "K-UPTIME $(cut -d' ' -f1 /proc/uptime)"
poweroff -f
"""


@pytest.mark.vm
def test_debian_73_boots_with_sched_ext_disabled_and_btf(tmp_path):
    require(shutil.which(qemu.QEMU) is not None, f"{qemu.QEMU} (Debian: qemu-system-x86)")
    require(initramfs.BUSYBOX.is_file(), f"{initramfs.BUSYBOX} (Debian: busybox-static)")
    k = cached_or_fetched("7.3")
    files = {"init": GUEST_INIT.encode(), "bin/busybox": initramfs.BUSYBOX.read_bytes()}
    for m in k.module_files:
        files[f"modules/{m.name}"] = m.read_bytes()
    files["modules.order"] = "".join(f"{m.name}\n" for m in k.module_files).encode()
    initrd = tmp_path / "initrd.cpio.gz"
    initrd.write_bytes(initramfs.gz(initramfs.newc(files, {"init", "bin/busybox"})))
    share = tmp_path / "share"
    share.mkdir()
    extra = qemu.share_args(share)
    b = qemu.boot(k.vmlinuz, initrd, timeout=120, mem_mb=512, cpus=2, accel="tcg,thread=multi", extra=extra, nice=10)
    lines = dict(ln.split(" ", 1) for ln in b.console.splitlines() if ln.startswith("K-"))
    tail = (b.console + b.stderr).strip()[-600:]
    assert lines.get("K-RELEASE") == k.release, tail
    assert lines.get("K-SCX") == "disabled", tail
    assert lines.get("K-BTF") == "yes", tail
    assert "K-INSMOD-FAILED" not in lines, tail
    assert (share / "guest.txt").read_text() == "hello\n", tail  # the cached 9p modules work
    print(
        f"debian {k.version}: booted to poweroff in {b.seconds:.1f} s wall (guest uptime {lines.get('K-UPTIME')} s), "
        f"can_migrate_task in kallsyms: {lines.get('K-CMT')}"
    )


SCX_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "K-BEFORE $(cat /sys/kernel/sched_ext/state)"
/scx_simple > /tmp/scx.log 2>&1 &
p=$!
sleep 3
echo "K-DURING $(cat /sys/kernel/sched_ext/state) $(cat /sys/kernel/sched_ext/root/ops)"
kill -INT $p
wait $p
echo "K-RC $?"
echo "K-AFTER $(cat /sys/kernel/sched_ext/state)"
tail -n 3 /tmp/scx.log
poweroff -f
"""


@pytest.mark.slow
@pytest.mark.vm
def test_toolchain_builds_scx_simple_that_runs_in_the_guest(tmp_path):
    """The cached toolchain (static libbpf, static bpftool, vmlinux.h of the image's BTF) builds
    the kernel tree's tools/sched_ext/scx_simple as a static program; in the 7.3 guest it turns
    sched_ext on and, stopped, off again. First run: ~170 MB download and a few minutes of build."""
    require(shutil.which(qemu.QEMU) is not None, f"{qemu.QEMU} (Debian: qemu-system-x86)")
    require(initramfs.BUSYBOX.is_file(), f"{initramfs.BUSYBOX} (Debian: busybox-static)")
    require((why := dk.toolchain_problem()) is None, why or "")
    k = cached_or_fetched("7.3")
    try:
        tc = dk.toolchain(k)
    except dk.DebianKernelError as e:
        require(False, f"toolchain for Debian's {k.version}: {e}")
    assert tc.libbpf_a.is_file() and (tc.libbpf_include / "bpf" / "libbpf.h").is_file()
    assert "struct sched_ext_ops {" in tc.vmlinux_h.read_text()
    assert initramfs.shared_libs(tc.bpftool) == []  # static
    scx = dk.source(k) / "tools" / "sched_ext"
    sys_inc = subprocess.run([dk.CLANG, "-v", "-E", "-"], input="", capture_output=True, text=True).stderr
    search = sys_inc.split("search starts here:")[-1].split("End of search list.")[0].split()
    bpf_o = tmp_path / "scx_simple.bpf.o"
    subprocess.run(
        [dk.CLANG, "-g", "-O2", "-mcpu=v3", "-target", "bpf", "-D__TARGET_ARCH_x86", "-mlittle-endian"]
        + ["-Iinclude", "-Iinclude/bpf-compat", f"-I{tc.dir}", f"-I{tc.libbpf_include}"]
        + ["-I../include/uapi", "-I../../include", *(f"-idirafter{d}" for d in search if d.startswith("/"))]
        + ["-Wno-compare-distinct-pointer-types", "-Wno-microsoft-anon-tag", "-fms-extensions"]
        + ["-c", "scx_simple.bpf.c", "-o", str(bpf_o)],
        cwd=scx,
        check=True,
    )
    linked = tmp_path / "scx_simple.linked.o"
    subprocess.run([str(tc.bpftool), "gen", "object", str(linked), str(bpf_o)], check=True)
    skel = subprocess.run(
        [str(tc.bpftool), "gen", "skeleton", str(linked), "name", "scx_simple"], check=True, capture_output=True
    ).stdout
    (tmp_path / "scx_simple.bpf.skel.h").write_bytes(skel)
    exe = tmp_path / "scx_simple"
    subprocess.run(
        ["gcc", "-static", "-O2", "-pthread", f"-I{tmp_path}", f"-I{tc.libbpf_include}", "-I../include"]
        + ["-I../include/uapi", "-Iinclude", "scx_simple.c", str(tc.libbpf_a), "-lelf", "-lz", "-o", str(exe)],
        cwd=scx,
        check=True,
        capture_output=True,
    )
    files = {"init": SCX_INIT.encode(), "bin/busybox": initramfs.BUSYBOX.read_bytes(), "scx_simple": exe.read_bytes()}
    initrd = tmp_path / "initrd.cpio.gz"
    initrd.write_bytes(initramfs.gz(initramfs.newc(files, set(files))))
    b = qemu.boot(k.vmlinuz, initrd, timeout=120, mem_mb=512, cpus=2, accel="tcg,thread=multi", nice=10)
    lines = dict(ln.split(" ", 1) for ln in b.console.splitlines() if ln.startswith("K-"))
    tail = (b.console + b.stderr).strip()[-600:]
    assert lines.get("K-BEFORE") == "disabled", tail
    assert lines.get("K-DURING") == "enabled simple", tail
    assert lines.get("K-RC") == "0" and lines.get("K-AFTER") == "disabled", tail


# ----- python -m data.collect --vm --kernel 6.1|7.3|PATH --------------------------------------------


def test_kernel_choice_of_the_guest_collector(tmp_path, monkeypatch, archive):
    from data.collect.guest import collect as gc

    monkeypatch.setenv("SCHEDLEARN_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(gc.qemu, "find_vmlinuz", lambda: Path("/boot/vmlinuz-6.1.0-9-amd64"))
    assert gc.resolve_kernel(None) == gc.resolve_kernel("6.1") == (Path("/boot/vmlinuz-6.1.0-9-amd64"), None)
    assert gc.resolve_kernel(str(tmp_path / "bzImage")) == (tmp_path / "bzImage", None)
    specs = (None, "6.1", "7.3", "7", "./7.3", "vmlinuz")
    assert [gc.kernel_series(s) for s in specs] == [None, None, "7.3", "7", None, None]
    assert gc.resolve_kernel("7.3", fetch=False) == (None, None)  # --check never fetches
    archive({"7.3.4-1~bpo13+1": SCX + MODS})
    kernel, debian = gc.resolve_kernel("7.3", log=lambda m: None)  # a collection fetches it once
    assert debian.version == "7.3.4-1~bpo13+1" and kernel == debian.vmlinuz
    assert gc.resolve_kernel("7.3", fetch=False) == (kernel, debian)


def test_check_of_an_unfetched_73_names_the_fetch_command_in_one_line(tmp_path, monkeypatch, capsys):
    from data.collect import command as collect

    monkeypatch.setenv("SCHEDLEARN_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(dk, "MIRROR", "http://127.0.0.1:9/debian")  # nothing listens: no network
    assert collect.main(["--vm", "--check", "--kernel", "7.3"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("python -m data.collect: error: ")
    assert (
        "Debian's 7.3 kernel is not fetched yet" in err and "python -m plumbing.debian_kernel fetch --series 7.3" in err
    )
    assert "127.0.0.1:9 unreachable" in err
    assert not (tmp_path / "cache").exists()  # nothing fetched, nothing created


def test_collection_on_73_passes_the_cached_kernel_to_the_boot(tmp_path, monkeypatch, archive):
    from data.collect import command as collect
    from data.collect.guest import collect as gc

    monkeypatch.setenv("SCHEDLEARN_KERNEL_CACHE", str(tmp_path / "cache"))
    archive({"7.3.4-1~bpo13+1": SCX + MODS})
    monkeypatch.setattr(gc, "unrunnable", lambda chosen: [])
    monkeypatch.setattr(gc.shutil, "which", lambda exe: f"/usr/bin/{exe}")  # qemu, clang, ... "there"
    monkeypatch.setattr(gc.initramfs, "BUSYBOX", Path(__file__))
    seen = {}

    def fake_collect_boot(specs, out, kernel, smp, *args, **kw):
        seen.update(kernel=kernel, debian=kw.get("debian"))
        return []

    monkeypatch.setattr(gc, "collect_boot", fake_collect_boot)
    assert collect.main(["--vm", "hackbench-pipe", "--kernel", "7.3", "--out", str(tmp_path / "out")]) == 0
    assert seen["debian"].version == "7.3.4-1~bpo13+1" and seen["kernel"] == seen["debian"].vmlinuz
    assert seen["debian"].meta()["package"] == "linux-binary-7.3.4+deb13-amd64"


@pytest.mark.vm
def test_guest_collection_on_73(tmp_path, capsys):
    """`python -m data.collect --vm hackbench-pipe --kernel 7.3 --seconds 3`, end to end: the
    can_migrate loader attaches on 7.3 and meta.json names the exact Debian version."""
    from data.collect import command as collect
    from data.collect.guest import collect as gc

    k = cached_or_fetched("7.3")
    problems = gc.problems(k.vmlinuz)
    require(not problems, "; ".join(problems))
    require(Path("/usr/lib/x86_64-linux-gnu/libbpf.a").exists(), "libbpf-dev (static libbpf.a)")
    require(Path("/sys/kernel/btf/vmlinux").exists(), "host BTF for vmlinux.h")
    out = tmp_path / "runs"
    rc = collect.main(["--vm", "hackbench-pipe", "--kernel", "7.3", "--seconds", "3", "--out", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    meta = json.loads((out / "hackbench-pipe-r01" / "meta.json").read_text())
    assert meta["kernel"]["release"] == k.release and k.version in meta["kernel"]["version"]  # uname -v
    assert meta["kernel_package"]["version"] == k.version and meta["kernel_package"]["suite"] == "trixie-backports"
    assert meta["loader_returncode"] == 0 and meta["records"] > 0, "no can_migrate_task record on 7.3"
    assert [d["name"] for d in meta["topology"]["domains"]] == ["MC"]  # debugfs shows them only when verbose
    print(f"7.3 collection: {meta['records']} records, boot {meta['guest']['boot_wall_s']} s wall")
