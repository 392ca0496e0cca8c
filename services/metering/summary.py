"""The usage summary the admin API serves, computed in ClickHouse."""

from __future__ import annotations

import time
from typing import Any

from services.metering.sink import TABLE, Sink
from shared.messages import (
    ModelUsage,
    ProviderUsage,
    UsageSummary,
    UsageSummaryQuery,
    UserUsage,
)

PERIODS = {"24h": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}

_AGG = (
    "count() AS requests, sum(prompt_tokens) AS p, sum(completion_tokens) AS c, "
    "sum(total_tokens) AS t, sum(cost_usd) AS cost"
)


def _group(row: tuple[Any, ...]) -> dict[str, Any]:
    requests, p, c, t, cost = row
    return {
        "requests": int(requests),
        "prompt_tokens": int(p or 0),
        "completion_tokens": int(c or 0),
        "total_tokens": int(t or 0),
        "cost_usd": round(float(cost or 0.0), 10),
    }


async def usage_summary(sink: Sink, query: UsageSummaryQuery) -> UsageSummary:
    end = time.time()
    start = end - PERIODS[query.period]
    where = "ts >= fromUnixTimestamp64Milli({start:Int64}) AND ts <= fromUnixTimestamp64Milli({end:Int64})"
    params: dict[str, Any] = {"start": int(start * 1000), "end": int(end * 1000)}
    if query.user is not None:
        where += " AND user = {user:String}"
        params["user"] = query.user
    base = f"FROM {TABLE} FINAL WHERE {where}"
    totals = await sink.query(f"SELECT {_AGG} {base}", params)
    by_model = await sink.query(f"SELECT model, {_AGG} {base} GROUP BY model ORDER BY cost DESC, model", params)
    by_provider = await sink.query(
        f"SELECT provider, {_AGG} {base} GROUP BY provider ORDER BY cost DESC, provider", params
    )
    by_user = await sink.query(f"SELECT user, {_AGG} {base} GROUP BY user ORDER BY cost DESC, user", params)
    total = _group(totals[0]) if totals else _group((0, 0, 0, 0, 0.0))
    return UsageSummary(
        period=query.period,
        start=start,
        end=end,
        total_requests=total["requests"],
        total_tokens=total["total_tokens"],
        prompt_tokens=total["prompt_tokens"],
        completion_tokens=total["completion_tokens"],
        total_cost_usd=total["cost_usd"],
        by_model=[ModelUsage(model=r[0], **_group(r[1:])) for r in by_model],
        by_provider=[ProviderUsage(provider=r[0], **_group(r[1:])) for r in by_provider],
        by_user=[UserUsage(user=r[0], **_group(r[1:])) for r in by_user],
    )
