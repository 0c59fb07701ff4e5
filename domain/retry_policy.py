"""When a failed task is tried again: exponential back-off with bounded jitter.

The n-th retry waits ``initial * 2**(n-1)`` seconds, capped at ``cap``, then spread by
±``jitter`` so that tasks failing together (a node went down) do not all come back together.
Randomness is passed in (a number in [0, 1)), like time, so decisions stay pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import InvalidInput


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_backoff_s: float = 5.0
    max_backoff_s: float = 600.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 100:
            raise InvalidInput("max_attempts must be between 1 and 100")
        if not 0 < self.initial_backoff_s <= 86_400:
            raise InvalidInput("initial_backoff_s must be above 0 and at most a day")
        if not self.initial_backoff_s <= self.max_backoff_s <= 86_400:
            raise InvalidInput("max_backoff_s must be at least initial_backoff_s, at most a day")
        if not 0 <= self.jitter < 1:
            raise InvalidInput("jitter must be in [0, 1)")

    def base_delay(self, failed_attempt: int) -> float:
        """The delay before attempt ``failed_attempt + 1``, without jitter."""
        return float(min(self.max_backoff_s, self.initial_backoff_s * 2 ** (failed_attempt - 1)))

    def delay(self, failed_attempt: int, unit_random: float) -> float:
        """The jittered delay; ``unit_random`` in [0, 1) comes from the caller."""
        spread = 1 - self.jitter + 2 * self.jitter * unit_random
        return self.base_delay(failed_attempt) * spread

    def gives_up_after(self, attempt: int) -> bool:
        return attempt >= self.max_attempts
