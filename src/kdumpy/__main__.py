import gc
import os
import sys

if sys.argv[1:2] == ["collect"]:
    # Nothing `kdumpy collect` allocates needs the cyclic garbage collector, whose passes
    # over the objects of ~110 modules being imported were 5% of its start-up
    # (callgrind: 6.6M of 141M instructions).
    gc.disable()

from kdumpy.cli import chosen_command, main  # noqa: E402  (after the collector is off)

code = main()
if chosen_command(sys.argv[1:]) == "collect":
    # The dump is written, fsynced and renamed into place: exit without tearing the
    # interpreter down module by module (~10 ms of CPU of every `kdumpy collect`, a
    # tenth of its start-up cost; the capture kernel runs it as a command).  Nothing
    # of collect's is left for atexit or finalizers; only stdio needs flushing.
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        sys.exit(code)  # reported as the interpreter reports it
    os._exit(code)
sys.exit(code)
