"""Program: bring each pswitch to the compiled desired state, sending only the difference.

`diff.py` is pure (desired vs what a pswitch reported, desired vs desired); `programmer.py`
is the thin I/O that reads a pswitch's rules, groups and meters when its session starts and
sends changes in make-before-break order, bounded by barriers.
"""
