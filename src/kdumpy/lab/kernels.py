"""Real Debian kernels for the lab: downloaded with apt-get, unpacked with dpkg -x, cached.

The lab names kernels by series ("5.10", "6.1", "6.12", "7" on x86_64; "arm64-6.1",
"arm64-6.12" on arm64); each series maps to a Debian suite and architecture whose
``linux-image-cloud-ARCH`` metapackage picks the newest build.  The cloud flavour is small and
has everything kdump needs (CRASH_DUMP, PROC_VMCORE, DEBUG_INFO_BTF; on amd64 also KEXEC_FILE
and KALLSYMS_ALL, which Debian's arm64 6.1 lacks: see reach.md section 7).
Each suite and architecture gets its own apt state directory so the host's apt configuration
is never touched (arm64 packages come from the same archive, asked for with
``APT::Architecture=arm64``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kdumpy.errors import KdumpyError
from kdumpy.lab.cache import cache_root, locked

MIRROR = os.environ.get("KDUMPY_DEBIAN_MIRROR", "http://deb.debian.org/debian")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

# Lab series -> Debian suite.  "7" is whatever sid carries (7.x at the time of writing).
# "5.10" is bullseye's main suite alone (5.10.223, linux-image-5.10.0-32-cloud-amd64): its
# bullseye-security kernels are indexed, but the mirror serves no -dbg for their cloud flavour.
SERIES_SUITES = {
    "5.10": "bullseye",
    "6.1": "bookworm",
    "6.12": "trixie",
    "7": "sid",
    "arm64-6.1": "bookworm",
    "arm64-6.12": "trixie",
}
# Lab series -> Debian architecture; a series not named here is amd64.
SERIES_ARCHES = {"arm64-6.1": "arm64", "arm64-6.12": "arm64"}
ALIASES = {
    "7.x": "7",
    "sid": "7",
    "bullseye": "5.10",
    "bookworm": "6.1",
    "trixie": "6.12",
    "latest": "7",
    "arm64-bookworm": "arm64-6.1",
    "arm64-trixie": "arm64-6.12",
}


def series_arch(series: str) -> str:
    """The Debian architecture ("amd64", "arm64") of a lab series."""
    return SERIES_ARCHES.get(series, "amd64")


def lab_series() -> list[str]:
    """The kernel series the lab can boot."""
    return list(SERIES_SUITES)


def normalize_series(version: str) -> str:
    """Map a user's kernel name ("6.1", "7.x", "trixie", ...) to a lab series, or fail."""
    version = ALIASES.get(version, version)
    if version not in SERIES_SUITES:
        # Accept a full release like 6.1.0-54 or 7.2.13 by its leading series.
        for series in sorted(SERIES_SUITES, key=len, reverse=True):
            if version.startswith(series + ".") or version.startswith(series + "-"):
                return series
        choices = ", ".join(SERIES_SUITES)
        raise KdumpyError(f"unknown lab kernel '{version}': choose one of {choices}")
    return version


class AptSuite:
    """apt-get/apt-cache on one Debian suite and architecture, with private state under the
    lab cache (amd64 keeps the directory it always had, apt/SUITE; others apt/SUITE-ARCH)."""

    def __init__(self, suite: str, arch: str = "amd64") -> None:
        self.suite = suite
        self.arch = arch
        self.dir = cache_root() / "apt" / (suite if arch == "amd64" else f"{suite}-{arch}")

    @property
    def name(self) -> str:
        """The suite, with its architecture when it is not the lab's default (amd64)."""
        return self.suite if self.arch == "amd64" else f"{self.suite} ({self.arch})"

    def _options(self) -> list[str]:
        arch = []
        if self.arch != "amd64":
            arch = ["-o", f"APT::Architecture={self.arch}", "-o", f"APT::Architectures={self.arch}"]
        return [*arch,
            "-o", f"Dir::Etc::SourceList={self.dir / 'sources.list'}",
            "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={self.dir / 'lists'}",
            "-o", f"Dir::Cache={self.dir / 'cache'}",
            "-o", "Debug::NoLocking=1",
            "-o", "APT::Sandbox::User=root",
        ]  # fmt: skip

    def update(self) -> None:
        for sub in ("lists/partial", "cache/archives/partial"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "sources.list").write_text(
            f"deb [arch={self.arch} signed-by={KEYRING}] {MIRROR} {self.suite} main\n"
        )
        self._run(
            ["apt-get", *self._options(), "-qq", "--error-on=any", "update"],
            f"apt-get update of {self.name} from {MIRROR}",
        )

    def depends(self, package: str) -> list[str]:
        """Names in the Depends field of *package* (first alternative of each)."""
        out = self._run(
            ["apt-cache", *self._options(), "show", "--no-all-versions", package],
            f"apt-cache show {package}",
        )
        match = re.search(r"^Depends: (.*)$", out, re.M)
        if not match:
            return []
        return [dep.split("|")[0].split("(")[0].strip() for dep in match.group(1).split(",")]

    def version_of(self, package: str) -> str:
        out = self._run(
            ["apt-cache", *self._options(), "show", "--no-all-versions", package],
            f"apt-cache show {package}",
        )
        match = re.search(r"^Version: (\S+)$", out, re.M)
        return match.group(1) if match else ""

    def download(self, package: str, dest: Path) -> Path:
        """Download *package*'s .deb into *dest* and return its path."""
        dest.mkdir(parents=True, exist_ok=True)
        self._run(
            ["apt-get", *self._options(), "-qq", "download", package],
            f"download of {package} from {self.suite}",
            cwd=dest,
        )
        debs = sorted(dest.glob(f"{package}_*.deb"))
        if not debs:
            raise KdumpyError(f"download of {package} from {self.suite} produced no .deb")
        return debs[-1]

    def closure(self, packages: list[str]) -> list[str]:
        """*packages* and everything they depend on (no recommends), as apt would install
        them on a system with nothing installed: a tree to unpack with ``dpkg -x``."""
        empty = self.dir / "empty-status"
        empty.write_text("")
        out = self._run(
            ["apt-get", *self._options(), "-o", f"Dir::State::status={empty}", "-s", "-q",
             "install", "--no-install-recommends", *packages],
            f"apt-get's resolution of {' '.join(packages)} in {self.name}",
        )  # fmt: skip
        return re.findall(r"^Inst (\S+)", out, re.M)

    def download_all(self, packages: list[str], dest: Path) -> list[Path]:
        """Download the .debs of *packages* into *dest* (one apt-get run)."""
        dest.mkdir(parents=True, exist_ok=True)
        self._run(
            ["apt-get", *self._options(), "-qq", "download", *packages],
            f"download of {len(packages)} packages from {self.name}",
            cwd=dest,
        )
        debs = sorted(dest.glob("*.deb"))
        if len(debs) != len(packages):
            raise KdumpyError(f"download from {self.name}: {len(debs)} .debs for {len(packages)}")
        return debs

    def _run(self, cmd: list[str], what: str, cwd: Path | None = None) -> str:
        if shutil.which(cmd[0]) is None:
            raise KdumpyError(f"{cmd[0]} not found: the lab needs Debian's apt tools")
        try:
            proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
        except subprocess.TimeoutExpired as exc:
            raise KdumpyError(f"{what} timed out") from exc
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()] or ["no message"]
            raise KdumpyError(f"{what} failed: {lines[-1].strip()}")
        return proc.stdout


@dataclass(frozen=True)
class LabKernel:
    """One unpacked Debian kernel: vmlinuz, modules, config, and how to get its debuginfo."""

    version: str  # lab series, e.g. "6.1"
    release: str  # uname -r, e.g. "6.1.0-54-cloud-amd64"
    package: str  # Debian image package, e.g. "linux-image-6.1.0-54-cloud-amd64"
    deb_version: str
    suite: str
    root: Path  # where the packages were unpacked
    arch: str = "amd64"  # Debian architecture: "amd64" or "arm64"

    @property
    def vmlinuz(self) -> Path:
        # sid moved the image next to the modules (/usr/lib/modules/REL/vmlinuz).
        boot = self.root / "boot" / f"vmlinuz-{self.release}"
        return boot if boot.exists() else self.modules_dir / "vmlinuz"

    @property
    def config_file(self) -> Path:
        boot = self.root / "boot" / f"config-{self.release}"
        return boot if boot.exists() else self.modules_dir / "config"

    @property
    def modules_dir(self) -> Path:
        for base in ("lib/modules", "usr/lib/modules"):
            path = self.root / base / self.release
            if path.is_dir():
                return path
        return self.root / "lib" / "modules" / self.release

    def config(self, option: str) -> str | None:
        """Value of CONFIG_*option* in the kernel's config ("y", "m", a string) or None."""
        name = option if option.startswith("CONFIG_") else f"CONFIG_{option}"
        for line in self.config_file.read_text().splitlines():
            if line.startswith(name + "="):
                return line.split("=", 1)[1].strip('"')
        return None

    def dbg_vmlinux(self) -> Path:
        """The DWARF vmlinux from Debian's -dbg package (a large download, cached)."""
        out = cache_root() / "dbg" / self.release / "vmlinux"
        if out.exists():
            return out
        with locked(f"dbg-{self.release}"):
            if out.exists():
                return out
            if out.is_symlink():  # left dangling by an older lab that kept the link
                out.unlink()
            apt = AptSuite(self.suite, self.arch)
            with tempfile.TemporaryDirectory(dir=cache_root()) as tmp:
                deb = None
                for name in (f"{self.package}-dbg", f"linux-image-{self.release}-dbg"):
                    try:
                        deb = apt.download(name, Path(tmp))
                        break
                    except KdumpyError:
                        apt.update()
                if deb is None:
                    raise KdumpyError(f"no -dbg package found for {self.release}")
                out.parent.mkdir(parents=True, exist_ok=True)
                _extract_vmlinux(deb, self.release, out)
        return out


def _extract_vmlinux(deb: Path, release: str, out: Path) -> None:
    """Stream the -dbg package and keep its vmlinux (a regular file, not a link to it).

    bookworm ships /usr/lib/debug/boot/vmlinux-REL; newer suites make that a symlink to
    /usr/lib/debug/lib/modules/REL/vmlinux, so the member is chosen by being a file.
    """
    names = (f"/boot/vmlinux-{release}", f"/modules/{release}/vmlinux")
    proc = subprocess.Popen(["dpkg", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    found = False
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(names):
                src = tar.extractfile(member)
                assert src is not None
                partial = out.with_suffix(".partial")
                with open(partial, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                partial.rename(out)
                found = True
                break
    proc.stdout.close()
    proc.wait()
    if not found:
        raise KdumpyError(f"{deb.name} holds no vmlinux for {release}")


def _meta_path(series: str) -> Path:
    return cache_root() / "kernels" / series / "kernel.json"


def get_kernel(version: str = "6.1") -> LabKernel:
    """Return the lab kernel of *version*, downloading and unpacking it on first use."""
    series = normalize_series(version)
    meta = _meta_path(series)
    if not meta.exists():
        with locked(f"kernel-{series}"):
            if not meta.exists():
                _fetch_kernel(series)
    data = json.loads(meta.read_text())
    data["root"] = Path(data["root"])
    kernel = LabKernel(**data)
    if not (kernel.modules_dir / "modules.dep").exists():
        with locked(f"kernel-{series}"):
            _depmod(kernel)
    return kernel


def _depmod(kernel: LabKernel) -> None:
    """Generate modules.dep, which Debian creates at install time rather than shipping."""
    depmod = shutil.which("depmod") or "/sbin/depmod"
    if not Path(depmod).exists():
        raise KdumpyError("depmod not found: install kmod")
    legacy = kernel.root / "lib" / "modules"
    if not legacy.exists() and (kernel.root / "usr" / "lib" / "modules").is_dir():
        # depmod -b looks under BASE/lib/modules; merged-/usr kernels keep them in /usr.
        legacy.parent.mkdir(parents=True, exist_ok=True)
        legacy.symlink_to("../usr/lib/modules")
    proc = subprocess.run(
        [depmod, "-b", str(kernel.root), kernel.release], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise KdumpyError(f"depmod for {kernel.release} failed: {proc.stderr.strip()}")


def _fetch_kernel(series: str) -> None:
    suite = SERIES_SUITES[series]
    arch = series_arch(series)
    apt = AptSuite(suite, arch)
    apt.update()
    meta_pkg = f"linux-image-cloud-{arch}"
    image = next((d for d in apt.depends(meta_pkg) if d.startswith("linux-image-")), None)
    if image is None:
        raise KdumpyError(f"{suite}: {meta_pkg} names no kernel image package")
    release = image.removeprefix("linux-image-")
    dest = cache_root() / "kernels" / series
    if dest.exists():
        shutil.rmtree(dest)
    root = dest / "root"
    debs_dir = dest / "debs"
    # Newer suites split the image into linux-binary-*/linux-modules-*; follow every
    # dependency that carries the release string.
    todo, seen = [image], set()
    while todo:
        pkg = todo.pop()
        if pkg in seen:
            continue
        seen.add(pkg)
        deb = apt.download(pkg, debs_dir)
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
        todo += [d for d in apt.depends(pkg) if release in d and d not in seen]
    kernel = LabKernel(series, release, image, apt.version_of(image), suite, root, arch)
    if not kernel.vmlinuz.exists():
        raise KdumpyError(f"{suite}: {image} carries no vmlinuz for {release}")
    shutil.rmtree(debs_dir, ignore_errors=True)
    meta = dict(kernel.__dict__)
    meta["root"] = str(root)
    _meta_path(series).write_text(json.dumps(meta, indent=1))
