"""Usage queries the admin API serves: summary and timeseries from the hourly rollup, the
request log from the raw events."""

from __future__ import annotations

import base64
import time
from typing import Any

from services.metering.schema import AUDIT_TABLE, CORRECTIONS_TABLE, HOURLY_TABLE, USAGE_TABLE
from services.metering.sink import Sink
from shared.errors import INVALID_REQUEST, GatewayError
from shared.messages import (
    AuditEntry,
    AuditLog,
    AuditQuery,
    ModelPerformance,
    ModelUsage,
    Percentiles,
    Performance,
    PriceVersionUsage,
    ProviderUsage,
    RequestLog,
    RequestLogEntry,
    RequestsQuery,
    TimeseriesPoint,
    TimeseriesQuery,
    TimeseriesSeries,
    TokenCounts,
    UsageFilter,
    UsagePerformance,
    UsageSummary,
    UsageTimeseries,
    UserUsage,
)

# The rollup's columns are named like TokenCounts' fields: sum each, in that order.
_KEYS = tuple(TokenCounts.model_fields)
_SUMS = ", ".join(f"sum({k})" for k in _KEYS)


def _counts(row: tuple[Any, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {k: int(v or 0) for k, v in zip(_KEYS[:-1], row[:-1], strict=True)}
    out["cost_usd"] = round(float(row[-1] or 0.0), 10)
    return out


def _window(query: UsageFilter) -> tuple[float, float]:
    start, end = query.window(time.time())
    if start >= end:
        raise GatewayError(INVALID_REQUEST, "'from' must be before 'to'", param="from")
    return start, end


def _filters(query: UsageFilter, params: dict[str, Any]) -> str:
    clauses = []
    for column, value in (
        ("user", query.user),
        ("client_key_id", query.client_key_id),
        ("model", query.model),
        ("provider", query.provider),
    ):
        if value is not None:
            clauses.append(f"{column} = {{{column}:String}}")
            params[column] = value
    return "".join(f" AND {c}" for c in clauses)


def _rollup_where(query: UsageFilter) -> tuple[str, dict[str, Any], float, float]:
    """Hours overlapping the window (the rollup's grain is one hour)."""
    start, end = _window(query)
    params: dict[str, Any] = {"start": int(start), "end": int(end)}
    where = "hour >= toStartOfHour(toDateTime({start:UInt32}, 'UTC')) AND hour <= toDateTime({end:UInt32}, 'UTC')"
    return where + _filters(query, params), params, start, end


async def usage_summary(sink: Sink, query: UsageFilter) -> UsageSummary:
    where, params, start, end = _rollup_where(query)
    base = f"FROM {HOURLY_TABLE} WHERE {where}"
    totals = await sink.query(f"SELECT {_SUMS} {base}", params)
    by_model = await sink.query(
        f"SELECT model, provider, {_SUMS} {base} GROUP BY model, provider ORDER BY sum(cost_usd) DESC, model",
        params,
    )
    by_provider = await sink.query(
        f"SELECT provider, {_SUMS} {base} GROUP BY provider ORDER BY sum(cost_usd) DESC, provider", params
    )
    by_user = await sink.query(f"SELECT user, {_SUMS} {base} GROUP BY user ORDER BY sum(cost_usd) DESC, user", params)
    # Not in the rollup: from the events, over the same whole hours.
    raw = (
        "ts >= toStartOfHour(toDateTime({start:UInt32}, 'UTC')) "
        "AND ts < toStartOfHour(toDateTime({end:UInt32}, 'UTC')) + INTERVAL 1 HOUR" + _filters(query, params)
    )
    unpriced = {
        (str(r[0]), str(r[1])): int(r[2])
        for r in await sink.query(
            f"SELECT model, provider, count() FROM {USAGE_TABLE} FINAL WHERE {raw} AND price_missing "
            "GROUP BY model, provider",
            params,
        )
    }
    total = _counts(totals[0]) if totals else _counts((0,) * 9)
    # Re-costings (services/metering/recost.py) of the same events: added to the totals, and
    # each event that consumed tokens counted under the price version its cost stands at now.
    corrected = (
        f"SELECT event_id, sum(delta_usd) AS delta, argMax(version_after, created_at) AS version "
        f"FROM {CORRECTIONS_TABLE} FINAL WHERE {raw} GROUP BY event_id"
    )
    corrections = await sink.query(f"SELECT sum(delta) FROM ({corrected})", params)
    correction_usd = round(float(corrections[0][0] or 0.0), 10) if corrections else 0.0
    versions = await sink.query(
        f"SELECT if(c.version != '', c.version, e.price_version) AS v, count(), sum(e.cost_usd + c.delta) "
        f"FROM {USAGE_TABLE} AS e FINAL LEFT JOIN ({corrected}) AS c ON e.event_id = c.event_id "
        f"WHERE {raw} AND e.total_tokens > 0 GROUP BY v ORDER BY v",
        params,
    )
    return UsageSummary(
        period=query.period or ("custom" if query.start is not None else "7d"),
        start=start,
        end=end,
        total_requests=total["requests"],
        total_errors=total["errors"],
        total_tokens=total["total_tokens"],
        prompt_tokens=total["prompt_tokens"],
        completion_tokens=total["completion_tokens"],
        cached_tokens=total["cached_tokens"],
        cache_write_tokens=total["cache_write_tokens"],
        reasoning_tokens=total["reasoning_tokens"],
        total_cost_usd=round(total["cost_usd"] + correction_usd, 10),
        corrections_usd=correction_usd,
        unpriced_requests=sum(unpriced.values()),
        by_model=[
            ModelUsage(
                model=r[0],
                provider=r[1],
                unpriced_requests=unpriced.get((r[0], r[1]), 0),
                price_missing=(r[0], r[1]) in unpriced,
                **_counts(r[2:]),
            )
            for r in by_model
        ],
        by_provider=[ProviderUsage(provider=r[0], **_counts(r[1:])) for r in by_provider],
        by_user=[UserUsage(user=r[0], **_counts(r[1:])) for r in by_user],
        by_price_version=[
            PriceVersionUsage(version=str(r[0]), requests=int(r[1]), cost_usd=round(float(r[2] or 0.0), 10))
            for r in versions
        ],
    )


# How many groups a grouped timeseries shows (the biggest by cost); the rest add up to "(other)".
SERIES_LIMIT = 10
# A raw event's columns summed like the rollup's (for what the rollup does not group by: project).
_RAW_SUMS = ", ".join(
    {
        "requests": "count()",
        "errors": "countIf(status >= 400)",
        "cost_usd": "sum(cost_usd)",
    }.get(k, f"sum({k})")
    for k in _KEYS
)


async def usage_timeseries(sink: Sink, query: TimeseriesQuery) -> UsageTimeseries:
    if query.group_by == "project":  # not in the rollup: from the events themselves
        start, end = _window(query)
        params: dict[str, Any] = {"start": int(start * 1000), "end": int(end * 1000)}
        where = "ts >= fromUnixTimestamp64Milli({start:Int64}) AND ts <= fromUnixTimestamp64Milli({end:Int64})"
        where += _filters(query, params)
        table, sums, hour = f"{USAGE_TABLE} FINAL", _RAW_SUMS, "toStartOfHour(ts)"
    else:
        where, params, start, end = _rollup_where(query)
        table, sums, hour = HOURLY_TABLE, _SUMS, "hour"
    bucket = hour if query.granularity == "hour" else f"toStartOfDay({hour})"
    rows = await sink.query(
        f"SELECT toUnixTimestamp({bucket}) AS b, {sums} FROM {table} WHERE {where} GROUP BY b ORDER BY b", params
    )
    points = [TimeseriesPoint(start=float(r[0]), **_counts(r[1:])) for r in rows]
    out = UsageTimeseries(granularity=query.granularity, start=start, end=end, data=points, group_by=query.group_by)
    if query.group_by is None:
        return out
    column = query.group_by
    top = await sink.query(
        f"SELECT {column} FROM {table} WHERE {where} GROUP BY {column} "
        f"ORDER BY sum(cost_usd) DESC, count() DESC, {column} LIMIT {SERIES_LIMIT}",
        params,
    )
    keys = [str(r[0]) for r in top]
    params["keys"] = keys
    grouped = await sink.query(
        f"SELECT if({column} IN {{keys:Array(String)}}, {column}, '(other)') AS k, toUnixTimestamp({bucket}) AS b, "
        f"{sums} FROM {table} WHERE {where} GROUP BY k, b ORDER BY k, b",
        params,
    )
    series: dict[str, list[TimeseriesPoint]] = {}
    for r in grouped:
        series.setdefault(str(r[0]), []).append(TimeseriesPoint(start=float(r[1]), **_counts(r[2:])))
    order = [k for k in keys if k in series] + [k for k in series if k not in keys]
    out.series = [TimeseriesSeries(key=k, data=series[k]) for k in order]
    return out


_QUANTILES = "quantilesTDigest(0.5, 0.9, 0.99)"


def _percentiles(values: Any) -> Percentiles:
    p = [round(float(v), 3) if v == v else 0.0 for v in (values or [0.0, 0.0, 0.0])]  # NaN: no rows
    return Percentiles(p50=p[0], p90=p[1], p99=p[2])


async def usage_performance(sink: Sink, query: UsageFilter) -> UsagePerformance:
    """Error rate and latency percentiles (in the gateway, to the first token, the gateway's
    own overhead) from the events themselves, overall and per model."""
    start, end = _window(query)
    params: dict[str, Any] = {"start": int(start * 1000), "end": int(end * 1000)}
    where = "ts >= fromUnixTimestamp64Milli({start:Int64}) AND ts <= fromUnixTimestamp64Milli({end:Int64})"
    where += _filters(query, params)
    measures = (
        "count(), countIf(status >= 400), "
        f"{_QUANTILES}(latency_ms), "
        f"{_QUANTILES}(if(stream AND status = 200 AND ttft_ms > 0, ttft_ms, NULL)), "
        f"{_QUANTILES}(greatest(latency_ms - upstream_latency_ms, 0))"
    )
    base = f"FROM {USAGE_TABLE} FINAL WHERE {where}"
    total = await sink.query(f"SELECT {measures} {base}", params)
    rows = await sink.query(
        f"SELECT model, provider, {measures} {base} GROUP BY model, provider ORDER BY count() DESC, model LIMIT 100",
        params,
    )

    def perf(r: tuple[Any, ...]) -> dict[str, Any]:
        requests, errors = int(r[0] or 0), int(r[1] or 0)
        return {
            "requests": requests,
            "errors": errors,
            "error_rate": round(errors / requests, 6) if requests else 0.0,
            "latency_ms": _percentiles(r[2]),
            "ttft_ms": _percentiles(r[3]),
            "overhead_ms": _percentiles(r[4]),
        }

    return UsagePerformance(
        start=start,
        end=end,
        total=Performance(**perf(total[0])) if total else Performance(),
        by_model=[ModelPerformance(model=r[0], provider=r[1], **perf(r[2:])) for r in rows],
    )


# The request log: every RequestLogEntry field, read straight from its column, except these two.
_LOG_EXPRESSIONS = {"id": "event_id", "ts": "toUnixTimestamp64Milli(ts) / 1000"}
_LOG_FIELDS = list(RequestLogEntry.model_fields)
_LOG_COLUMNS = ", ".join(_LOG_EXPRESSIONS.get(f, f) for f in _LOG_FIELDS)


def _cursor(ts_ms: int, event_id: str) -> str:
    return base64.urlsafe_b64encode(f"{ts_ms}:{event_id}".encode()).decode()


def _parse_cursor(cursor: str) -> tuple[int, str]:
    try:
        ts, _, event_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        return int(ts), event_id
    except ValueError as exc:
        raise GatewayError(INVALID_REQUEST, "'before' is not a cursor this API gave out", param="before") from exc


async def request_log(sink: Sink, query: RequestsQuery) -> RequestLog:
    start, end = _window(query)
    params: dict[str, Any] = {"start": int(start * 1000), "end": int(end * 1000), "limit": query.limit + 1}
    where = "ts >= fromUnixTimestamp64Milli({start:Int64}) AND ts <= fromUnixTimestamp64Milli({end:Int64})"
    where += _filters(query, params)
    if query.status is not None:
        where += " AND status = {status:UInt16}"
        params["status"] = query.status
    if query.before:
        ts_ms, event_id = _parse_cursor(query.before)
        where += " AND (toUnixTimestamp64Milli(ts), event_id) < ({cts:Int64}, {cid:String})"
        params.update(cts=ts_ms, cid=event_id)
    rows = await sink.query(
        f"SELECT {_LOG_COLUMNS} FROM {USAGE_TABLE} FINAL WHERE {where} "
        "ORDER BY ts DESC, event_id DESC LIMIT {limit:UInt32}",
        params,
    )
    entries = [RequestLogEntry(**dict(zip(_LOG_FIELDS, r, strict=True))) for r in rows[: query.limit]]
    more = len(rows) > query.limit
    cursor = _cursor(round(entries[-1].ts * 1000), entries[-1].id) if more and entries else None
    return RequestLog(data=entries, has_more=more, next_cursor=cursor)


async def provider_keys_last_used(sink: Sink) -> dict[str, float]:
    """When each provider key last served a request that succeeded."""
    rows = await sink.query(
        f"SELECT provider_key_id, max(toUnixTimestamp64Milli(ts)) FROM {USAGE_TABLE} "
        "WHERE provider_key_id != '' AND status < 400 GROUP BY provider_key_id",
        {},
    )
    return {str(r[0]): r[1] / 1000 for r in rows}


async def audit_log(sink: Sink, query: AuditQuery) -> AuditLog:
    """The most recent audit events, newest first."""
    params: dict[str, Any] = {"limit": query.limit}
    where = "1"
    if query.action is not None:
        where += " AND action = {action:String}"
        params["action"] = query.action
    if query.actor is not None:
        where += " AND actor = {actor:String}"
        params["actor"] = query.actor
    rows = await sink.query(
        "SELECT event_id, toUnixTimestamp64Milli(ts) / 1000, actor, actor_user, action, target, status, source, "
        f"instance FROM {AUDIT_TABLE} FINAL WHERE {where} ORDER BY ts DESC, event_id DESC LIMIT {{limit:UInt32}}",
        params,
    )
    fields = list(AuditEntry.model_fields)
    return AuditLog(data=[AuditEntry(**dict(zip(fields, r, strict=True))) for r in rows])
