"""Admission: whether a request fits its key's, user's and project's limits and budgets,
before any upstream call; what it reserved; the X-RateLimit-* and X-Budget-* headers.

A request reserves one request of each ``rpm``, one slot of each ``max_parallel``, its
estimated maximum tokens of each ``tpm`` and its estimated maximum cost of each budget.
When it finishes, the reservations settle to what it consumed (tokens and cost as metered
from its usage); a request refused anywhere gives back what it took. The estimate is an
upper bound in the common case: prompt characters (a token is at least one character) plus
per-message overhead, and the largest of the output limits the body names (``max_tokens``,
``max_completion_tokens``, ``max_output_tokens``) or the model's output limit, for each of the
``n`` choices it asks for. A request that generates nothing (``count_tokens``) reserves one
request of each ``rpm`` and a ``max_parallel`` slot, and no tokens or cost.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard

from services.edge.auth import Principal
from services.edge.governance import LimitBook
from services.edge.prices import EdgePrices, price_context
from services.edge.providers.base import Usage, prompt_chars
from services.edge.quota import Lease, Quotas, QuotaUnavailable
from services.edge.spend import metered_spend
from shared.bus import Bus
from shared.catalog import Plan, RouteTable
from shared.cost import cost_usd
from shared.errors import BUDGET_EXCEEDED, LIMITS_UNAVAILABLE, PERMISSION, RATE_LIMITED, GatewayError
from shared.limits import (
    BUDGET_BUCKET,
    RATE_BUCKET,
    CounterState,
    Limits,
    Scope,
    budget_key,
    minute_window,
    period_at,
    rate_key,
)

log = logging.getLogger("switchyard.edge.admission")

Kind = Literal["rpm", "tpm", "par", "budget"]
# What a request may consume: an answer (chat, Messages, Responses), embeddings (input tokens
# only), or nothing but a request (count_tokens).
Consumes = Literal["answer", "embeddings", "request"]
# The fields that bound a request's output tokens, in every inbound API; the largest counts.
OUTPUT_LIMITS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
UNLIMITED = "unlimited"
_MESSAGE_OVERHEAD = 16  # tokens a message's role and framing may cost
_PART_TOKENS = 2_000  # an image, audio or file part, whatever its bytes


@dataclass
class Claim:
    kind: Kind
    lease: Lease
    amount: float


@dataclass
class ScopeView:
    scope: Scope
    ident: str
    limits: Limits
    rpm: Lease | None = None
    tpm: Lease | None = None
    budget: Lease | None = None


@dataclass
class Ticket:
    """What one request reserved, until it settles."""

    window_end: float
    views: list[ScopeView] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    settled: bool = False
    refused_budget: Scope | None = None  # a budget refused the request: its headers are shown
    # The estimate the reservation was made from (None: no tpm or budget asked for one).
    estimate: tuple[int, int] | None = None

    def settle(self, tokens: int, cost: float) -> None:
        if self.settled:
            return
        self.settled = True
        for claim in self.claims:
            actual = {"rpm": 1.0, "tpm": float(tokens), "par": 0.0, "budget": cost}[claim.kind]
            Quotas.settle(claim.lease, claim.amount, actual)

    def release(self) -> None:
        """Give back everything (the request was refused before it was admitted)."""
        if self.settled:
            return
        self.settled = True
        for claim in self.claims:
            Quotas.settle(claim.lease, claim.amount, 0.0)

    def headers(self) -> dict[str, str]:
        now = time.time()
        out = {"x-ratelimit-reset": str(max(math.ceil(self.window_end - now), 0))}
        closest: tuple[float, Scope] = (2.0, "key")
        for header, dim in (("requests", "rpm"), ("tokens", "tpm")):
            best: tuple[float, float, Scope] | None = None
            for view in self.views:
                limit = view.limits.rpm if dim == "rpm" else view.limits.tpm
                lease = view.rpm if dim == "rpm" else view.tpm
                if limit is None or lease is None:
                    continue
                left = lease.remaining(limit)
                if best is None or left / limit < best[0] / best[1]:
                    best = (left, float(limit), view.scope)
            if best is None:
                out[f"x-ratelimit-limit-{header}"] = out[f"x-ratelimit-remaining-{header}"] = UNLIMITED
            else:
                out[f"x-ratelimit-limit-{header}"] = str(int(best[1]))
                out[f"x-ratelimit-remaining-{header}"] = str(int(best[0]))
                closest = min(closest, (best[0] / best[1], best[2]))
        out["x-ratelimit-scope"] = closest[1]
        tightest: tuple[float, float, Scope] | None = None
        for view in self.views:
            budget = view.limits.budget_usd
            if view.budget is None or budget is None:
                continue
            cap = float(budget)
            left = view.budget.remaining(cap)
            shown = left < cap * 0.2 or view.scope == self.refused_budget
            if shown and (tightest is None or left < tightest[0]):
                tightest = (left, cap, view.scope)
        if tightest is not None:
            out["x-budget-remaining-usd"] = f"{tightest[0]:.6f}"
            out["x-budget-limit-usd"] = f"{tightest[1]:.6f}"
            out["x-budget-scope"] = tightest[2]
        return out


_LIMIT_NAMES = {"par": "max_parallel", "rpm": "rpm", "tpm": "tpm", "budget": "budget_usd"}


class Admission:
    def __init__(
        self,
        bus: Bus,
        book: LimitBook,
        quotas: Quotas,
        prices: EdgePrices,
        *,
        fail_open: bool,
        max_output: int,
        refused: Callable[[str, str], None] | None = None,
    ) -> None:
        self.bus = bus
        self.book = book
        self.quotas = quotas
        self.prices = prices
        self.fail_open = fail_open
        self.max_output = max_output
        self.refused = refused  # told (scope, limit) of every refusal: the metrics count them

    async def admit(
        self, principal: Principal, plan: Plan, table: RouteTable, body: dict[str, Any], consumes: Consumes = "answer"
    ) -> Ticket:
        """Reserve what the request may consume in every limited scope, or raise a 429 (with
        the headers) having reserved nothing."""
        now = time.time()
        window, window_end = minute_window(now)
        ticket = Ticket(window_end)
        scopes = self.book.scopes(principal)
        if not scopes:
            return ticket
        tokens = cost = 0.0
        priced = consumes != "request"
        if priced and any(limits.tpm is not None or limits.budget_usd is not None for _, _, limits in scopes):
            prompt, output = ticket.estimate = self.estimate(body, plan, table, consumes)
            tokens = float(prompt + output)
            budgeted = [(scope, ident) for scope, ident, limits in scopes if limits.budget_usd is not None]
            if budgeted:
                self._priced_or_refuse(plan, table, budgeted)
                cost = self.max_cost(plan, table, prompt, output, price_context(body))
        try:
            for scope, ident, limits in scopes:
                view = ScopeView(scope, ident, limits)
                ticket.views.append(view)
                if limits.max_parallel is not None:
                    par = self.quotas.lease(RATE_BUCKET, rate_key("par", scope, ident), integral=True, expiring=True)
                    await self._take(ticket, "par", par, 1, limits.max_parallel, scope, ident, now, window_end)
                if limits.rpm is not None:
                    view.rpm = self._minute("rpm", scope, ident, window, window_end)
                    await self._take(ticket, "rpm", view.rpm, 1, limits.rpm, scope, ident, now, window_end)
                if limits.tpm is not None and priced:
                    view.tpm = self._minute("tpm", scope, ident, window, window_end)
                    await self._take(ticket, "tpm", view.tpm, tokens, limits.tpm, scope, ident, now, window_end)
                if limits.budget_usd is not None and priced:
                    period = period_at(limits.budget_period, now)
                    view.budget = self.quotas.lease(
                        BUDGET_BUCKET,
                        budget_key(scope, ident, period),
                        integral=False,
                        expiring=True,
                        opened=functools.partial(self._open_budget, scope, ident, period.start, period.end),
                    )
                    await self._take(ticket, "budget", view.budget, cost, limits.budget_usd, scope, ident, now, 0)
        except GatewayError as exc:
            ticket.release()
            exc.headers.update(ticket.headers())
            raise
        return ticket

    def _priced_or_refuse(self, plan: Plan, table: RouteTable, budgeted: list[tuple[Scope, str]]) -> None:
        """A budget cannot bound spending on a model nobody priced: refuse it (403) unless an
        admin priced it or allowed it unpriced."""
        for route in plan.targets:
            if self.prices.price(route, table) is None and not self.prices.allows_unpriced(route):
                scope, ident = budgeted[0]
                self._count_refusal(scope, "budget")
                raise GatewayError(
                    PERMISSION,
                    f"Model {route.model!r} ({route.billed_provider}) has no price, and the budget of {scope} "
                    f"{ident!r} applies to this request, so its spending could not be counted. An admin can set "
                    f"its price (POST /ai/prices) or allow it unpriced (POST /ai/catalog with allow_unpriced).",
                    param="model",
                )

    def max_cost(self, plan: Plan, table: RouteTable, prompt: int, output: int, context: str) -> float:
        """The most the request may cost on any of its targets (a tier by the prompt's upper
        estimate; the variant its kind asks for, or the standard rates should a target drop
        the field that asks)."""
        worst, now = 0.0, time.time()
        tokens = Usage(prompt_tokens=prompt, completion_tokens=output)
        for route in plan.targets:
            price = self.prices.price(route, table, now)
            if price is not None:
                worst = max(worst, *(cost_usd(price, tokens, kind, now) for kind in {context, ""}))
        return worst

    def _minute(self, kind: Literal["rpm", "tpm"], scope: Scope, ident: str, window: int, end: float) -> Lease:
        """This edge's lease on a per-minute counter."""
        key = rate_key(kind, scope, ident, window)
        return self.quotas.lease(RATE_BUCKET, key, integral=True, expiring=False, window_end=end)

    async def _take(
        self,
        ticket: Ticket,
        kind: Kind,
        lease: Lease,
        amount: float,
        limit: float,
        scope: Scope,
        ident: str,
        now: float,
        window_end: float,
    ) -> None:
        what = f"{scope} {ident!r}"
        if amount > limit and kind in ("tpm", "budget"):
            if kind == "budget":
                ticket.refused_budget = scope
            self._count_refusal(scope, kind)
            raise self._refusal(kind, what, limit, amount, now, window_end, never=True)
        try:
            ok = await self.quotas.take(lease, amount, limit)
        except QuotaUnavailable as exc:
            if not self.fail_open:
                log.warning("refusing a request: the %s counter of %s cannot be reached (%s)", kind, what, exc)
                raise GatewayError(
                    LIMITS_UNAVAILABLE,
                    f"The limits of {what} cannot be checked right now (the shared counters are unreachable); "
                    "retry shortly.",
                ) from exc
            self.quotas.force(lease, amount)
            ok = True
        if not ok:
            if kind == "budget":
                ticket.refused_budget = scope
            self._count_refusal(scope, kind)
            raise self._refusal(kind, what, limit, amount, now, window_end)
        ticket.claims.append(Claim(kind, lease, amount))

    def _count_refusal(self, scope: Scope, kind: Kind) -> None:
        if self.refused is not None:
            self.refused(scope, _LIMIT_NAMES[kind])

    @staticmethod
    def _refusal(
        kind: Kind, what: str, limit: float, amount: float, now: float, window_end: float, *, never: bool = False
    ) -> GatewayError:
        wait = max(math.ceil(window_end - now), 1)
        if kind == "budget":
            message = (
                f"The budget of {what} (${limit:g}) does not cover this request's reservation (${amount:.6f}, "
                f"its maximum cost at the model's price); lower max_tokens, or raise the budget."
                if never
                else f"The budget of {what} (${limit:g}) is used up for this period."
            )
            return GatewayError(BUDGET_EXCEEDED, message)
        if kind == "par":
            err = GatewayError(RATE_LIMITED, f"Too many requests in flight for {what}: the limit is {limit:g}.")
            wait = 1
        elif never:
            err = GatewayError(
                RATE_LIMITED,
                f"This request may use up to {amount:.0f} tokens, more than the {limit:g} tokens per minute of "
                f"{what}; lower max_tokens.",
            )
        else:
            unit = "requests" if kind == "rpm" else "tokens"
            err = GatewayError(
                RATE_LIMITED, f"Rate limit reached for {what}: {limit:g} {unit} per minute. Retry in {wait} s."
            )
        err.headers["retry-after"] = str(wait)
        return err

    async def _open_budget(self, scope: Scope, ident: str, start: float, end: float | None) -> CounterState:
        """A budget counter made for a new period (or lost): it starts from the metered spend."""
        spent = 0.0
        try:
            spent = await metered_spend(self.bus, scope, ident, start)
        except GatewayError as exc:
            log.warning("budget of %s %s opened without the metered spend (%s); reconciled later", scope, ident, exc)
        return CounterState(taken=spent, scope=scope, ident=ident, period_start=start, period_end=end)

    def estimate(
        self, body: dict[str, Any], plan: Plan, table: RouteTable, consumes: Consumes = "answer"
    ) -> tuple[int, int]:
        """An upper estimate of ``(prompt tokens, completion tokens)``."""
        if consumes == "embeddings":
            inputs = body.get("input")
            items = inputs if isinstance(inputs, list) else [inputs]
            prompt = sum(len(i) if isinstance(i, str) else len(i) if isinstance(i, list) else 0 for i in items)
            return prompt + _MESSAGE_OVERHEAD * len(items), 0
        messages = body.get("messages")
        if isinstance(messages, list):
            prompt = prompt_chars(body) + _MESSAGE_OVERHEAD * len(messages)
            for message in messages:
                content = message.get("content") if isinstance(message, dict) else None
                if isinstance(content, list):
                    prompt += _PART_TOKENS * sum(
                        1 for p in content if isinstance(p, dict) and not isinstance(p.get("text"), str)
                    )
                if isinstance(message, dict) and message.get("tool_calls"):
                    prompt += len(json.dumps(message["tool_calls"]))
            system = body.get("system")  # the Messages API's system prompt (chat's is a message)
            if system:
                prompt += len(system) if isinstance(system, str) else len(json.dumps(system))
        else:  # the Responses API: input items (or a string) and instructions, as sent
            given = body.get("input")
            prompt = len(given) if isinstance(given, str) else len(json.dumps(given or []))
            instructions = body.get("instructions")
            prompt += len(instructions) if isinstance(instructions, str) else 0
            prompt += _MESSAGE_OVERHEAD * (len(given) if isinstance(given, list) else 1)
        if body.get("tools"):
            prompt += len(json.dumps(body["tools"]))
        return prompt, self.output_bound(body)

    def output_bound(self, body: dict[str, Any]) -> int:
        """The most output tokens the request may make: the largest output limit it names (or
        the default), for each of its ``n`` choices."""
        limits = [v for name in OUTPUT_LIMITS if _positive_int(v := body.get(name))]
        output = max(limits) if limits else self.max_output
        choices = body.get("n")
        return output * (choices if _positive_int(choices) else 1)


def _positive_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
