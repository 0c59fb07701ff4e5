"""The ``StepFences`` port (handlers/step_fence.py) as a script: each ``try_take`` answers the
next of ``answers`` (True, False, or an exception to raise), then True; every call is kept.

Consumes the answers a test wants; emits the calls the fence got, in order.
"""

from __future__ import annotations

from handlers.step_fence import StepFences


class ScriptedFences:
    def __init__(self, *answers: bool | Exception) -> None:
        self._answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    async def try_take(self, key: int) -> bool:
        self.calls.append(("take", key))
        answer = self._answers.pop(0) if self._answers else True
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def release(self, key: int) -> None:
        self.calls.append(("release", key))

    def close(self) -> None:
        self.calls.append(("close", 0))


_port: StepFences = ScriptedFences()
