"""What only the worker runs: a claimed turn from its first token to its end.

- runner: drives the CodeAct loop (`chat.agent`) for one turn and persists every
  step through `chat.actions`
- stop_watch: one thread per worker process that notices Stop for all its turns
- executor: a conversation's code executor (its sandbox, its files, lost state)
- pool: sandbox lifecycle: the warm pool, claims, idle reaping, orphan reconcile

The web process never imports this package (an import-linter contract).
"""
