"""Policy: turn findings into one decision.

Each finding gets the action configured for its category; the strongest action wins
(block > redact > log > allow). ``log`` and ``allow`` both let the request through unchanged;
``log``
findings are still counted and reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ext_proc.config import Action, PolicySettings
from ext_proc.traps import Finding

__all__ = ["Judged", "Policy", "Verdict"]

_RANK = {Action.ALLOW: 0, Action.LOG: 1, Action.REDACT: 2, Action.BLOCK: 3}


@dataclass(frozen=True, slots=True)
class Judged:
    finding: Finding
    action: Action


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of policy for one body: ``decision`` is allow, redact or block."""

    decision: str
    judged: tuple[Judged, ...]

    @property
    def to_redact(self) -> list[Finding]:
        return [j.finding for j in self.judged if j.action is Action.REDACT]

    @property
    def blocking_rules(self) -> list[str]:
        return sorted({j.finding.rule for j in self.judged if j.action is Action.BLOCK})

    @property
    def weight(self) -> int:
        """Sum of severity weights of the findings that policy acts on (for security debt)."""
        return sum(j.finding.weight for j in self.judged if j.action is not Action.ALLOW)


class Policy:
    def __init__(self, settings: PolicySettings) -> None:
        self._actions = dict(settings.actions)
        self._default = settings.default_action

    def action_for(self, category: str) -> Action:
        return self._actions.get(category, self._default)

    def _act(self, category: str, response: bool) -> Action:
        action = self.action_for(category)
        return Action.REDACT if response and action is Action.BLOCK else action

    def judge(self, findings: Sequence[Finding], *, response: bool = False) -> Verdict:
        """Decide for a request body, or (``response=True``) a response body, where ``block``
        means ``redact``: a response that is already streaming cannot be refused."""
        judged = tuple(Judged(f, self._act(f.category, response)) for f in findings)
        strongest = max((j.action for j in judged), key=_RANK.__getitem__, default=Action.ALLOW)
        decision = {Action.BLOCK: "block", Action.REDACT: "redact"}.get(strongest, "allow")
        return Verdict(decision, judged)
