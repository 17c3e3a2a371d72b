"""Policy: turn findings into one decision, per route.

Each finding gets the action configured for its category on the request's route (the first
``policy.routes`` entry whose path prefix and header match, else the global policy); the
strongest action wins (block > redact > log > allow). ``log`` and ``allow`` both let the request
through unchanged; ``log`` findings are still counted and reported. A route in shadow mode
computes the same decision but enforces none of it (the pipeline reports what would have
happened).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ext_proc.config import Action, PolicySettings, RouteRule
from ext_proc.traps import Finding

__all__ = ["Judged", "Policy", "RoutePolicy", "Verdict"]

_RANK = {Action.ALLOW: 0, Action.LOG: 1, Action.REDACT: 2, Action.BLOCK: 3}


@dataclass(frozen=True, slots=True)
class Judged:
    finding: Finding
    action: Action


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """The effective policy of one route: its name, actions per category, shadow flag."""

    name: str
    actions: Mapping[str, Action]
    default_action: Action
    shadow: bool

    def action_for(self, category: str, *, response: bool = False) -> Action:
        if category == "overflow":  # too many findings to act on one by one: never passes
            return Action.REDACT if response else Action.BLOCK
        action = self.actions.get(category, self.default_action)
        # A response that is already streaming cannot be refused: block means redact there.
        return Action.REDACT if response and action is Action.BLOCK else action


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of policy for one body: ``decision`` is allow, redact or block."""

    decision: str
    judged: tuple[Judged, ...]
    route: str = "default"
    shadow: bool = False

    @property
    def to_redact(self) -> list[Finding]:
        # Zero-width findings (a normalisation bound hit) mark the body, not a span.
        return [
            j.finding
            for j in self.judged
            if j.action is Action.REDACT and j.finding.end > j.finding.start
        ]

    @property
    def blocking_rules(self) -> list[str]:
        return sorted({j.finding.rule for j in self.judged if j.action is Action.BLOCK})

    @property
    def weight(self) -> int:
        """Sum of severity weights of the findings that policy acts on (for security debt)."""
        return sum(j.finding.weight for j in self.judged if j.action is not Action.ALLOW)


class Policy:
    def __init__(self, settings: PolicySettings) -> None:
        base = dict(settings.actions)
        self.default = RoutePolicy("default", base, settings.default_action, settings.shadow)
        self._routes: list[tuple[RouteRule, RoutePolicy]] = [
            (
                rule,
                RoutePolicy(
                    rule.name,
                    {**base, **rule.actions},
                    settings.default_action,
                    settings.shadow if rule.shadow is None else rule.shadow,
                ),
            )
            for rule in settings.routes
        ]

    def route_for(self, path: str, headers: Mapping[str, str]) -> RoutePolicy:
        """The policy of the first route that matches, else the global one."""
        for rule, route in self._routes:
            if rule.matches(path, headers):
                return route
        return self.default

    def action_for(self, category: str) -> Action:
        return self.default.action_for(category)

    def judge(
        self,
        findings: Sequence[Finding],
        route: RoutePolicy | None = None,
        *,
        response: bool = False,
    ) -> Verdict:
        """Decide for a request body, or (``response=True``) a response body."""
        rp = route or self.default
        judged = tuple(Judged(f, rp.action_for(f.category, response=response)) for f in findings)
        strongest = max((j.action for j in judged), key=_RANK.__getitem__, default=Action.ALLOW)
        decision = {Action.BLOCK: "block", Action.REDACT: "redact"}.get(strongest, "allow")
        return Verdict(decision, judged, rp.name, rp.shadow)
