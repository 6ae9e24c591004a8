"""Build the capture initramfs (``kdumpy rebuild``): a cpio of our own, in Python.

Contents, smallest that works: busybox for the shell tools, the Python interpreter
with only the modules the capture side imports (as byte code) and the shared libraries
ldd reports, kdumpy's vmcore/collect/capture packages, the kernel modules the dump
target needs (host-only), network settings and the ssh key for remote targets, the
hooks, and an /init that mounts the target and runs ``python3 -m kdumpy.capture``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from kdumpy.errors import KdumpyError
from kdumpy.service import kmod, pyruntime, targets
from kdumpy.service.config import CAPTURE_MOUNTPOINT, KdumpConfig, render_config
from kdumpy.service.elfdeps import is_elf, shared_libraries
from kdumpy.service.estimate import luks_size
from kdumpy.service.image import Entry, Image
from kdumpy.service.stacks import block, net
from kdumpy.service.stacks.install import StackFiles, plan_stack

DATA = Path(__file__).parent / "data"
HOOK_DIRS = ("/etc/kdump/pre.d", "/etc/kdump/post.d", "/etc/kdump/emergency.d")
Report = Callable[[str], None]


@dataclass
class BuildOptions:
    """What to build for.  ``hostonly`` reads drivers and routes from this machine;
    without it (building for another machine or a lab guest) the target must be
    explicit and its drivers given in ``extra_modules``."""

    release: str
    output: Path
    modules_dir: Path | None = None  # default /lib/modules/<release>
    kernel_config: Path | None = None  # default /boot/config-<release>
    hostonly: bool = True
    extra_modules: list[str] = field(default_factory=list)
    compression: str | None = None  # zstd|gzip|none; default: what the kernel supports
    device_timeout: int = 60
    net_timeout: int = 180


@dataclass
class BuildResult:
    path: Path
    size: int  # compressed archive bytes
    unpacked: int  # file content bytes once unpacked
    files: int
    modules: list[str]
    compression: str
    sha256: str
    python_modules: int
    stack: dict = field(default_factory=dict)  # the target's storage stack (sizing)


def build_initramfs(config: KdumpConfig, opts: BuildOptions, report: Report = print) -> BuildResult:
    """Build the capture initramfs for ``config`` and write it to ``opts.output``."""
    modules_dir = opts.modules_dir or Path("/lib/modules") / opts.release
    config = targets.resolve_default_target(config) if opts.hostonly else config
    if config.target is None:
        raise KdumpyError(f"{config.source}: an explicit dump target is needed here")
    image = Image()
    _add_base(image)
    _add_busybox(image)
    runtime = pyruntime.find_runtime()
    if runtime.missing:
        report(f"warning: not installed, left out: {', '.join(runtime.missing)}")
    _add_python(image, runtime)
    env = _target_env(config, opts)
    found = _detect_stack(config, opts)
    network: dict | None = None
    # An iSCSI LUN or NVMe/TCP namespace under a local target needs the network to it.
    portal = found.portal()
    if opts.hostonly and (config.target.is_remote or config.fence_kdump_nodes or portal):
        host = portal if portal and not config.target.is_remote else _network_host(config)
        network = _network_stack(host, opts)
        if network is None:
            env.update(_network_env(host, opts))
        else:  # replayed by kdumpy.capture.stacks with iproute2's ip
            env.update(KDUMP_NETWORK="stack", KDUMP_NET_TARGET_IP=network["target_ip"])
    if config.failure_action == "dump_to_rootfs" and opts.hostonly:
        _add_rootfs(image, opts)
    elif opts.hostonly:
        # Where a failed capture leaves its reason for the next boot (capture/lastfail.py):
        # only a root on a plain disk, whose drivers cost little beside the target's.
        with contextlib.suppress(KdumpyError):
            _add_rootfs(image, opts, plain_only=True)
    stack = _add_stack(image, found, opts, modules_dir, network)
    module_names = _target_modules(config, opts, stack) + list(config.extra_modules)
    module_names += opts.extra_modules
    module_names += config.dracut.add_drivers  # dracut_args --add-drivers and the like
    omitted = {kmod.normalize(n) for n in config.dracut.omit_drivers}
    module_names = [n for n in module_names if kmod.normalize(n) not in omitted]
    loaded = _add_kernel_modules(image, modules_dir, module_names)
    if stack.summary:
        stack.summary["module_bytes"] = _stack_module_bytes(image, modules_dir, stack.modules)
    if config.target.kind == "ssh":
        _add_ssh(image, config)
    elif config.fence_kdump_nodes and Path("/etc/resolv.conf").exists():
        image.add_host_file("/etc/resolv.conf")  # fence_kdump nodes may be names
    _add_collector_and_hooks(image, config)
    env.update(
        KDUMP_KERNEL_RELEASE=opts.release,
        KDUMP_PYTHON=str(runtime.executable),
        KDUMP_PYTHONPATH=":".join(runtime.path_entries),
        KDUMP_DEVICE_TIMEOUT=str(opts.device_timeout),
    )
    image.add_bytes("/etc/kdumpy/init.env", render_env(env).encode())
    image.add_bytes("/etc/kdump.conf", render_config(config).encode())
    image.add_host_file(DATA / "init.sh", "/init", mode=0o755)
    image.add_host_file(DATA / "selftest.py", "/usr/lib/kdumpy/selftest.py", mode=0o644)
    compression = opts.compression or config.dracut.compression or kernel_compression(opts)
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    digest = image.write(opts.output, compression)
    return BuildResult(
        path=opts.output,
        size=opts.output.stat().st_size,
        unpacked=image.file_size(),
        files=len(image.entries),
        modules=loaded,
        compression=compression,
        sha256=digest,
        python_modules=len(runtime.modules),
        stack=stack.summary,
    )


def render_env(env: dict[str, str]) -> str:
    """Shell assignments, every value quoted: config values never reach a shell bare."""
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))


def kernel_compression(opts: BuildOptions) -> str:
    """zstd if the kernel can unpack it (CONFIG_RD_ZSTD=y), else gzip (CONFIG_RD_GZIP)."""
    config = opts.kernel_config or Path("/boot") / f"config-{opts.release}"
    try:
        text = config.read_text()
    except OSError:
        return "gzip"
    return "zstd" if "CONFIG_RD_ZSTD=y" in text else "gzip"


def _add_base(image: Image) -> None:
    for d in ("/dev", "/proc", "/sys", "/run", "/tmp", "/root", "/etc", CAPTURE_MOUNTPOINT):
        image.add_dir(d)
    # The kernel opens /dev/console for /init before anything is mounted.
    image.add_chardev("/dev/console", 5, 1)
    image.add_chardev("/dev/null", 1, 3, mode=0o666)
    image.add_bytes("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    image.add_bytes("/etc/group", b"root:x:0:\n")
    image.add_bytes("/etc/initrd-release", b'NAME="kdumpy capture initramfs"\n')


def _add_busybox(image: Image) -> None:
    """Static busybox and a link per applet (busybox itself is not in --list)."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise KdumpyError("busybox not found: install busybox-static")
    if shared_libraries(Path(busybox)):
        raise KdumpyError(f"{busybox} is not static: install busybox-static")
    image.add_host_file(busybox, "/bin/busybox", mode=0o755)
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    for name in applets.stdout.split():
        if name != "busybox" and f"/bin/{name}" not in image:
            image.add_symlink(f"/bin/{name}", "busybox")
    for d in ("/sbin", "/usr/bin", "/usr/sbin"):
        image.add_dir(d)


def add_elf(image: Image, path: str, dest: str | None = None) -> None:
    """An executable or library with the shared libraries it needs (at their host paths)."""
    image.add_host_file(path, dest, strip=True)
    for lib in shared_libraries(Path(path)):
        if lib not in image:
            image.add_host_file(lib, strip=True)


def _add_python(image: Image, runtime: pyruntime.PythonRuntime) -> None:
    add_elf(image, str(runtime.executable))
    image.add_symlink("/usr/bin/python3", str(runtime.executable))
    for _name, file in sorted(runtime.modules.items()):
        if file.suffix == ".so":
            add_elf(image, str(file))
        elif file.name == "__init__.py" or file.suffix == ".py":
            image.add_bytes(str(file.with_suffix(".pyc")), pyruntime.compile_module(file))
    # Python finds its prefix through this directory (getpath's platstdlib landmark).
    image.add_dir(str(runtime.prefix / "lib" / f"python{_pyver()}" / "lib-dynload"))
    image.add_bytes(
        "/usr/bin/kdumpy",
        f'#!/bin/sh\nexec {shlex.quote(str(runtime.executable))} -S -m kdumpy "$@"\n'.encode(),
        mode=0o755,
    )


def _pyver() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _target_env(config: KdumpConfig, opts: BuildOptions) -> dict[str, str]:
    assert config.target is not None
    return {
        "KDUMP_NFS_FSTYPE": _nfs_fstype(config.target.mount_options),
        "KDUMP_TARGET_KIND": config.target.kind,
        "KDUMP_TARGET_SPEC": config.target.spec,
        "KDUMP_MOUNT_OPTIONS": _mount_options(config.target.mount_options),
        "KDUMP_NETWORK": "1" if config.target.is_remote or config.fence_kdump_nodes else "0",
        "KDUMP_NET_TIMEOUT": str(opts.net_timeout),
    }


def _nfs_fstype(options: str) -> str:
    """nfs4 unless the options ask for v2/v3: busybox's "nfs" speaks only v2/v3 (with
    portmapper), while a kernel nfs4 mount needs just the server address."""
    versions = [
        o.split("=", 1)[1] for o in options.split(",") if o.startswith(("vers=", "nfsvers="))
    ]
    return "nfs" if versions and not versions[-1].startswith("4") else "nfs4"


def _mount_options(options: str) -> str:
    """Read-write, and none of fstab's boot-time options (kdump-utils drops them too)."""
    drop = {"ro", "rw", "noauto", "nofail", "nobootwait", "defaults"}
    kept = [o for o in options.split(",") if o and o not in drop]
    return ",".join(["rw", *kept])


def _target_modules(config: KdumpConfig, opts: BuildOptions, stack: StackFiles) -> list[str]:
    """Filesystem modules, and with hostonly the drivers under the target device (the
    disks at the bottom of its stack, then the stack's own modules)."""
    target = config.target
    assert target is not None
    names = list(kmod.FS_MODULES.get("nfs" if target.kind == "nfs" else target.kind, []))
    if opts.hostonly and (target.is_fs or target.kind == "raw"):
        for disk in stack.disks or [targets.device_node(target.spec)]:
            names += kmod.block_device_drivers(disk)
    return names + stack.modules


def _detect_stack(config: KdumpConfig, opts: BuildOptions) -> block.Stack:
    """Host-only: the iSCSI/NVMe-TCP/md/LUKS/LVM stack under a block device target (none for a
    remote target, or when building for another machine)."""
    target = config.target
    assert target is not None
    if not opts.hostonly or not (target.is_fs or target.kind == "raw"):
        return block.Stack("")
    return block.detect(targets.device_node(target.spec))


def _add_stack(
    image: Image, found: block.Stack, opts: BuildOptions, modules_dir: Path,
    network: dict | None = None,
) -> StackFiles:  # fmt: skip
    """The stack's tools, settings, key files and the plan the capture side follows
    (nothing for a plain disk), and the *network* stack's plan."""
    if network is not None:
        found = replace(found, network=network)
    keys = block.luks_keys(found, block.read_crypttab())
    dumps = {layer.uuid: block.luks_dump(layer.backing)
             for layer in found.layers if layer.kind == "luks"}  # fmt: skip
    index = kmod.ModuleIndex(modules_dir)
    files = plan_stack(found, keys, dumps, index.resolve)
    before = set(image.entries)
    for tool in files.tools:
        add_elf(image, tool)
    for dest, (data, mode) in files.files.items():
        image.add_bytes(dest, data, mode=mode)
    for dest, (src, mode) in files.host_files.items():
        image.add_host_file(src, dest, mode=mode)
    if found.layers or found.network or found.iscsi or found.nvme:
        added = [image.entries[p] for p in set(image.entries) - before]
        links = [f"{x['kind']} {x['name']}" for x in (found.network or {}).get("links", [])]
        logins = [s.describe() for s in found.iscsi] + [c.describe() for c in found.nvme]
        files.summary = {
            "layers": logins + [layer.describe() for layer in found.layers] + links,
            "tool_bytes": sum(_entry_size(e) for e in added),
            "luks_memory": luks_size(list(dumps.values()), os.uname().machine),
            "stack_memory": block.runtime_memory(found),
        }
    return files


def _stack_module_bytes(image: Image, modules_dir: Path, names: list[str]) -> int:
    """The unpacked bytes of the stack's kernel modules and those they need (nvme_tcp
    with nvme_fabrics, dm_crypt with dm_mod, ...), as written into the image."""
    index = kmod.ModuleIndex(modules_dir)
    order = index.load_order([n for n in names if index.known(n)])
    entries = [image.entries.get(f"/lib/modules/kdumpy/{n}.ko") for n in order]
    return sum(_entry_size(e) for e in entries if e is not None)


def _entry_size(entry: Entry) -> int:
    """A file's bytes in the unpacked initramfs (stripped as they will be written)."""
    return len(entry.content()) if entry.kind == "file" else 0


def _add_rootfs(image: Image, opts: BuildOptions, plain_only: bool = False) -> None:
    """For failure_action dump_to_rootfs: name the root filesystem (/etc/kdump/rootfs,
    "<fstype> <UUID=...>") and carry what it takes to mount it.  *plain_only*: only a
    root on a disk or partition (no md/LVM/LUKS to bring up), else KdumpyError."""
    root = targets.mount_of("/")
    if not root.source.startswith("/dev/"):
        raise KdumpyError(f"dump_to_rootfs: the root filesystem ({root.source}) is not a disk")
    if plain_only and block.detect(root.source).layers:
        raise KdumpyError(f"{root.source}: the root filesystem is on a storage stack")
    uuid = targets.uuid_of(root.source)
    spec = f"UUID={uuid}" if uuid else root.source
    image.add_bytes("/etc/kdump/rootfs", f"{root.fstype} {spec}\n".encode())
    opts.extra_modules.extend(kmod.FS_MODULES.get(root.fstype, [root.fstype]))
    opts.extra_modules.extend(kmod.block_device_drivers(root.source))


def _add_kernel_modules(image: Image, modules_dir: Path, names: list[str]) -> list[str]:
    index = kmod.ModuleIndex(modules_dir)
    # Filesystem modules may be built in or folded into ext4: optional.
    wanted = [n for n in names if index.known(n)]
    unknown = [n for n in names if not index.known(n) and n not in _optional_fs_names()]
    if unknown:
        raise KdumpyError(f"kernel modules not found in {modules_dir}: {', '.join(unknown)}")
    order = index.load_order(wanted)
    for name in order:
        image.add_bytes(f"/lib/modules/kdumpy/{name}.ko", index.module_bytes(name))
    image.add_bytes("/etc/kdumpy/modules", "".join(f"{n}\n" for n in order).encode())
    return order


def _optional_fs_names() -> set[str]:
    return {kmod.normalize(n) for names in kmod.FS_MODULES.values() for n in names}


def _network_host(config: KdumpConfig) -> str:
    assert config.target is not None
    if config.target.kind == "ssh":
        return config.target.ssh_host
    if config.target.kind == "nfs":
        return config.target.nfs_host
    return config.fence_kdump_nodes[0]


def _network_stack(host: str, opts: BuildOptions) -> dict | None:
    """The network plan when the route to *host* leaves by a bond, VLAN or bridge or
    it is IPv6 (service/stacks/net.py); None for a plain NIC to an IPv4 host."""
    ip = targets.resolve_ip(host)
    dev = targets.route_dev(ip)
    view = net.read_ip_view()
    if not net.needs_plan(view, dev, ip):
        return None
    plan = net.plan_network(view, dev, ip)
    for nic in net.nic_names(plan):
        opts.extra_modules.extend(kmod.net_device_drivers(nic))
    opts.extra_modules.extend(net.modules_for(plan))
    return plan


def _network_env(host: str, opts: BuildOptions) -> dict[str, str]:
    """The interface and route to *host*: the remote target, an iSCSI portal, or the
    first fence_kdump node (fence_kdump needs the network even when the dump stays local)."""
    net = targets.route_to(host)
    opts.extra_modules.extend(kmod.net_device_drivers(net.iface))
    return {
        "KDUMP_NETWORK": "1",
        "KDUMP_NET_MAC": net.mac,
        "KDUMP_NET_ADDRESS": net.address,
        "KDUMP_NET_GATEWAY": net.gateway or "",
        "KDUMP_NET_TARGET_IP": net.target_ip,
    }


def _add_ssh(image: Image, config: KdumpConfig) -> None:
    ssh = shutil.which("ssh")
    if ssh is None:
        raise KdumpyError("ssh not found: install openssh-client for the ssh dump target")
    add_elf(image, ssh)
    key = Path(config.sshkey)
    if not key.exists():
        raise KdumpyError(f"{config.sshkey}: ssh key missing; run kdumpy propagate")
    image.add_host_file(key, mode=0o600)
    # known_hosts for host key checking; config for ports and other client settings.
    for extra in (Path("/root/.ssh/known_hosts"), Path("/root/.ssh/config")):
        if extra.exists():
            image.add_host_file(extra, mode=0o600)
    if Path("/etc/resolv.conf").exists():
        image.add_host_file("/etc/resolv.conf")


def _add_collector_and_hooks(image: Image, config: KdumpConfig) -> None:
    """makedumpfile if asked for, hooks, hook directories and extra_bins at host paths."""
    files: list[str] = []
    if config.uses_makedumpfile:
        found = shutil.which(config.core_collector[0])
        if found is None:
            raise KdumpyError(
                f"{config.source}: core_collector {config.core_collector[0]} not found"
            )
        files.append(found)
    for hook in (config.kdump_pre, config.kdump_post, config.kdump_emergency):
        if hook:
            files.append(hook)
    for d in HOOK_DIRS:
        if Path(d).is_dir():
            files += [str(p) for p in sorted(Path(d).iterdir()) if p.is_file()]
    for name in config.extra_bins:
        found = name if name.startswith("/") else shutil.which(name)
        if found is None or not Path(found).exists():
            raise KdumpyError(f"{config.source}: extra_bins: {name} not found")
        files.append(found)
    for path in config.dracut.install:  # dracut_args --install: files at their host paths
        if not Path(path).exists():
            raise KdumpyError(f"{config.source}: dracut_args --install: {path} not found")
        files.append(path)
    for f in files:
        if not Path(f).exists():
            raise KdumpyError(f"{config.source}: {f} does not exist")
        if is_elf(Path(f)):
            add_elf(image, f)
        else:
            image.add_host_file(f)
