"""The pure model: what a VM needs, what dom0 has, the charging rule, the verdict.

Nothing here reads a file, runs a program or talks to xapi: callers pass text and records
in, and get figures out. ``tests/test_model_is_pure.py`` holds it to that.
"""
