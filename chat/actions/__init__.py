"""Writes that span rows or tell clients, one module per topic.

Each public `do_*` function is one user-visible change: it writes in one
transaction and announces what it wrote with `broadcast.publish_on_commit`
(persist first, notify second). These are the only functions that broadcast
persisted rows. Views, consumers and the worker call them; they never call
views, consumers or the worker.

- conversations: access (the one ownership check), create, rename, model, delete
- messages: send, retry, stop; the only place that enqueues a turn
- turns: claim, lease, finish, interrupt, sweep
- replies: the assistant's streamed replies and notices
- executions: code cells and their outputs
- files: uploads and the files code writes
- feedback: the owner's rating of an answer
- quotas: per-user limits, checked before anything is stored
- accounts: sign-up under CODEACT_SIGNUP
"""
