#!/bin/sh
# kdumpy early kdump: dracut cmdline hook (sourced by dracut-cmdline; runs the loader).
[ -f /kdumpy-early/kdumpy-early.sh ] && /bin/sh /kdumpy-early/kdumpy-early.sh load
