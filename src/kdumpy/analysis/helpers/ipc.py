"""System V IPC of an IPC namespace (``ipcs``; the initial one unless ``-n`` names a
task): shared memory segments, semaphore arrays and message queues, each kind an IDR of
``kern_ipc_perm``\\ s."""

from __future__ import annotations

from kdumpy.analysis.helpers.trees import xarray_entries
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.errors import KdumpyError

# ipc_namespace.ids[] order (ipc/util.h) and the structure embedding each kind's perm.
IPC_SEM_IDS, IPC_MSG_IDS, IPC_SHM_IDS = 0, 1, 2
_KINDS = {IPC_SHM_IDS: ("struct shmid_kernel", "shm_perm"),
          IPC_SEM_IDS: ("struct sem_array", "sem_perm"),
          IPC_MSG_IDS: ("struct msg_queue", "q_perm")}  # fmt: skip


def ipc_objects(prog: Program, kind: int, ns: Object | None = None) -> list[Object]:
    """The ``shmid_kernel``/``sem_array``/``msg_queue`` objects of one kind, by id, in
    the IPC namespace ``ns`` (``struct ipc_namespace *``; the initial one by default)."""
    ids = (ns if ns is not None else prog.object("init_ipc_ns")).ids[kind]
    struct, member = _KINDS[kind]
    offset = prog.offsetof(struct, member)
    head = int(ids.ipcs_idr.idr_rt.xa_head)
    return [prog.pointer(struct, perm - offset) for _i, perm in xarray_entries(prog, head)]


def task_ipc_ns(task: Object) -> Object:
    """A task's IPC namespace (``ipcs -n``); an exiting task has none (KdumpyError)."""
    nsproxy = task.nsproxy
    if not int(nsproxy):
        raise KdumpyError(f"task {int(task.pid)} has no namespaces (exiting)")
    return nsproxy.ipc_ns
