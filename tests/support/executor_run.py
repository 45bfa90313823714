"""One turn of a conversation, run by the worker's executor in the test's process:
its executions recorded as the runner records them, so that what the executor
reads of earlier cells (their status) is as in the product."""

from __future__ import annotations

from chat.actions import executions, messages, replies, turns
from chat.worker.executor import ConversationExecutor


class Run:
    def __init__(self, conversation):
        _, queued = messages.do_send_user_message(conversation, "go")
        claim = turns.claim_turn(queued.pk)
        assert claim is not None
        self.turn, self.reply = claim.turn, claim.first_reply
        self.notices: list[tuple[str, str]] = []
        self.executor = ConversationExecutor(self.turn, lambda *n: self.notices.append(n))

    def execute(self, code):
        """Run code; returns the executor's Executed and the text the cell printed."""
        reply, self.reply = self.reply or replies.do_start_reply(self.turn), None
        execution = executions.do_start_execution(self.turn, reply, code, {})
        texts: list[str] = []
        executed = self.executor.execute(
            execution, lambda o: texts.append(o.get("text", "")), lambda: False
        )
        result = executed.result
        executions.do_finish_execution(
            execution, status=result.status, detail=result.detail,
            execution_count=result.execution_count, duration=result.duration,
            kernel_restarted=result.kernel_restarted, dropped={}, observation="",
            sandbox_id=self.executor.record.pk if self.executor.record else None,
        )  # fmt: skip
        return executed, "".join(texts)

    def finish(self):
        self.executor.close()
        turns.do_finish_turn(self.turn, "done")
