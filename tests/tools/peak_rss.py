#!/usr/bin/env python3
"""Runs a command and writes its peak resident memory (KiB) to a file.

Usage: peak_rss.py OUT_FILE COMMAND [ARG...]
Exits with the command's status; its stdout and stderr pass through. The peak is
getrusage(RUSAGE_CHILDREN).ru_maxrss after it was waited for. Measured from this small process
rather than from the test: Linux counts a parent's resident memory in a child's peak when the
child was forked from it (the test holds the objects it wrote: tens of MiB)."""
import resource, subprocess, sys

status = subprocess.run(sys.argv[2:]).returncode
with open(sys.argv[1], "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(status if status >= 0 else 128 - status)
