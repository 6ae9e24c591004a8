"""When to rebuild the capture initramfs: a manifest of hashes of everything that went in.

Stored beside the initramfs as JSON.  Any difference in the config files, the kernel,
its module index, the hooks and extra binaries, the Python interpreter or kdumpy's own
code means the initramfs is stale (kdumpctl compares mtimes; hashes also catch a file
copied back with an old date).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import kdumpy
from kdumpy.fileio import replace
from kdumpy.service.config import KdumpConfig
from kdumpy.service.initramfs import HOOK_DIRS


def file_hash(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return "missing"


def kdumpy_hash() -> str:
    """One hash over kdumpy's sources and data files."""
    root = Path(kdumpy.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if (
            path.is_file()
            and path.suffix in (".py", ".sh", ".service")
            and "__pycache__" not in path.parts
        ):
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def inputs(
    config: KdumpConfig, sysconfig_path: Path | None, kernel: Path, modules_dir: Path
) -> dict[str, str]:
    """Hashes of every input of the initramfs build."""
    files = [Path(config.source), kernel, modules_dir / "modules.dep", Path(sys.executable)]
    if sysconfig_path is not None:
        files.append(sysconfig_path)
    files += [Path(p) for p in (config.kdump_pre, config.kdump_post, config.kdump_emergency) if p]
    files += [Path(b) for b in config.extra_bins if b.startswith("/")]
    # The LUKS key files under the target are named there (service/stacks/block.py).
    files.append(Path("/etc/crypttab"))
    if config.target is not None and config.target.kind == "ssh":
        files += [Path(config.sshkey), Path("/root/.ssh/known_hosts")]
    for d in HOOK_DIRS:
        if Path(d).is_dir():
            files += sorted(p for p in Path(d).iterdir() if p.is_file())
    result = {str(f): file_hash(f) for f in files}
    result["kdumpy"] = kdumpy_hash()
    result["python"] = sys.version
    return result


def read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("inputs", {}) if isinstance(data, dict) else {}


def stale_reason(manifest: Path, initrd: Path, current: dict[str, str]) -> str | None:
    """Why the initramfs must be rebuilt, or None if it is up to date."""
    if not initrd.exists():
        return f"{initrd} does not exist"
    recorded = read(manifest)
    if not recorded:
        return f"{manifest} is missing or unreadable"
    for key, value in current.items():
        if recorded.get(key) != value:
            return f"{key} changed"
    if recorded.get("initrd") not in (None, file_hash(initrd)):
        return f"{initrd} was modified"
    return None


def write(manifest: Path, current: dict[str, str], initrd: Path, extra: dict) -> None:
    """Record the inputs (and the initramfs's own hash) after a successful build."""
    data = {"inputs": {**current, "initrd": file_hash(initrd)}, **extra}
    replace(manifest, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
