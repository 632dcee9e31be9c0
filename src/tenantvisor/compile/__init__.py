"""Compile: tenant intent + physical topology + allocations -> desired physical state.

Pure (no I/O, no clock): the same inputs always give the same rules, groups and views, so a
restart, a second instance or a test derives exactly what is on the pswitches.
"""
