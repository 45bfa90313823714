"""Domain modules the tools suite offers to models as functions.

Each module is standalone (standard library only, no import of this project):
its source is copied into the sandbox's /workspace and imported there, by the
model's code and by the cells the function formats run. Its functions are pure
and deterministic over data literals, and take and return JSON values.
"""
