"""The sign-in limiter: one budget for the API and the website, shared by every replica.

Each key (``user:NAME`` and ``ip:ADDRESS``) has a GCRA bucket: ``limit`` failed attempts in a
burst, then one more every ``period / limit`` seconds. A bucket is one number, its
"theoretical arrival time" (``tat``): the moment it is empty again. An attempt is allowed when
every key's bucket has room, and then charges all of them at once; a refused attempt charges
nothing. Sign-in charges before it checks the password, so parallel guesses count at once, and
refunds when the password was right: only failures add up.

Both keys are charged, so neither made-up user names (the address runs out) nor many addresses
(the name runs out) get past it. Buckets live where every replica sees them: the hub's database
(table ``login_throttle``) or, when ``redis_url`` is set, Redis. Memory is bounded and never
emptied at once: a bucket expires on its own when its ``tat`` passes, and past ``max_keys``
the buckets closest to empty go first, so the names under attack (the fullest) are the last
to be forgotten.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from hub import db
from hub.errors import HubError
from hub.models import LoginThrottle
from hub.settings import Settings

log = logging.getLogger("cvflow.hub.throttle")

Clock = Callable[[], float]
_TABLE: sa.Table = LoginThrottle.metadata.tables["login_throttle"]
_SWEEP_BATCH = 1000
_NAME_KEY_LIMIT = 100


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    #: Whole seconds until an attempt would be allowed (0 when this one was).
    retry_after: int = 0


class TooManyAttempts(HubError):
    """Sign-in refused by the limiter; it may be tried again in ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too_many_attempts", details={"retry_after": retry_after})
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after)}


class Throttle(Protocol):
    def attempt(self, keys: Iterable[str]) -> Verdict:
        """Charge every key one attempt if all have room; otherwise charge none."""

    def refund(self, keys: Iterable[str]) -> None:
        """Give back one attempt to every key (the password turned out right)."""


def charge(throttle: Throttle, keys: Iterable[str]) -> None:
    """Charge one sign-in attempt, or raise :class:`TooManyAttempts`."""
    verdict = throttle.attempt(keys)
    if not verdict.allowed:
        raise TooManyAttempts(verdict.retry_after)


def login_keys(username: str, address: str | None) -> tuple[str, str]:
    """The two buckets one sign-in attempt is charged to.

    User names are compared as sign-in compares them (trimmed, lower case); overlong ones are
    hashed so a key stays small. IPv6 addresses count by their /64, which one client usually
    holds whole.
    """
    name = username.strip().lower()
    if len(name) > _NAME_KEY_LIMIT:
        name = "#" + hashlib.sha256(name.encode()).hexdigest()
    return f"user:{name}", f"ip:{_address_key(address or 'unknown')}"


def _address_key(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:_NAME_KEY_LIMIT]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _retry_after(seconds: float) -> int:
    return max(1, math.ceil(seconds))


class Unlimited:
    """``login_rate_limit = 0``: every attempt is allowed."""

    def attempt(self, keys: Iterable[str]) -> Verdict:
        return Verdict(True)

    def refund(self, keys: Iterable[str]) -> None:
        return None


class DatabaseThrottle:
    """Buckets as rows of ``login_throttle``; each check-and-charge is one conditional upsert."""

    def __init__(self, engine: Engine, *, limit: int, period: float, max_keys: int,
                 clock: Clock = time.time) -> None:
        self.engine = engine
        self.limit = limit
        self.period = period
        self.interval = period / limit
        self.max_keys = max_keys
        self.clock = clock
        dialect = engine.dialect.name
        insert: Callable[[sa.Table], postgresql.Insert | sqlite.Insert]
        if dialect == "postgresql":
            insert = postgresql.insert
        elif dialect == "sqlite":
            insert = sqlite.insert
        else:  # pragma: no cover - the hub runs on SQLite and PostgreSQL only
            raise ValueError(f"no login throttle for the {dialect} database")
        self._insert = insert

    def attempt(self, keys: Iterable[str]) -> Verdict:
        now = self.clock()
        ordered = sorted(set(keys))  # one lock order for every replica: no deadlocks
        with db.writer(self.engine).connect() as conn:
            with conn.begin() as trans:
                refused = [key for key in ordered if not self._charge(conn, key, now)]
                if refused:
                    tat = conn.execute(sa.select(sa.func.max(_TABLE.c.tat)).where(_TABLE.c.key.in_(refused))).scalar()
                    trans.rollback()  # nothing is charged for a refused attempt
                    return Verdict(False, _retry_after((tat or now) + self.interval - self.period - now))
        self._sweep(now)
        return Verdict(True)

    def _charge(self, conn: Connection, key: str, now: float) -> bool:
        start = sa.case((_TABLE.c.tat > now, _TABLE.c.tat), else_=now)
        stmt = self._insert(_TABLE).values(key=key, tat=now + self.interval)
        upsert = stmt.on_conflict_do_update(
            index_elements=[_TABLE.c.key],
            set_={"tat": start + self.interval},
            where=start + self.interval <= now + self.period,
        ).returning(_TABLE.c.key)
        # A row comes back only when it was inserted or updated: no room, no row.
        return conn.execute(upsert).first() is not None

    def refund(self, keys: Iterable[str]) -> None:
        with db.writer(self.engine).begin() as conn:
            for key in sorted(set(keys)):
                conn.execute(sa.update(_TABLE).where(_TABLE.c.key == key).values(tat=_TABLE.c.tat - self.interval))

    def _sweep(self, now: float) -> None:
        """Delete expired buckets, then the emptiest ones past ``max_keys``; never all at once."""
        try:
            with db.writer(self.engine).begin() as conn:
                # SKIP LOCKED (PostgreSQL): a sweep never waits for, nor blocks on, a bucket in use.
                expired = (sa.select(_TABLE.c.key).where(_TABLE.c.tat <= now).order_by(_TABLE.c.tat)
                           .limit(_SWEEP_BATCH).with_for_update(skip_locked=True))
                conn.execute(sa.delete(_TABLE).where(_TABLE.c.key.in_(expired.scalar_subquery())))
                over = conn.execute(sa.select(sa.func.count()).select_from(_TABLE)).scalar_one() - self.max_keys
                if over > 0:
                    emptiest = (sa.select(_TABLE.c.key).order_by(_TABLE.c.tat).limit(over)
                                .with_for_update(skip_locked=True))
                    conn.execute(sa.delete(_TABLE).where(_TABLE.c.key.in_(emptiest.scalar_subquery())))
        except sa.exc.OperationalError as exc:  # the next attempt sweeps again
            log.warning("login throttle sweep failed: %s", exc)


# KEYS[1] is the index (a sorted set of bucket keys by tat, for the cap); the rest are buckets.
# ARGV: now, interval, period, max_keys. Returns "0" when charged, else the seconds to wait.
_ATTEMPT = """
local now, interval, period, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local wait, tats = 0, {}
for i = 2, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  tats[i] = tat + interval
  local over = tats[i] - now - period
  if over > wait then wait = over end
end
if wait > 0 then return tostring(wait) end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], tostring(tats[i]), 'PX', math.ceil((tats[i] - now) * 1000))
  redis.call('ZADD', KEYS[1], tats[i], KEYS[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local excess = redis.call('ZCARD', KEYS[1]) - cap
if excess > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], excess)
  for j = 1, #popped, 2 do redis.call('DEL', popped[j]) end
end
return '0'
"""
_REFUND = """
local now, interval = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 2, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0') - interval
  if tat > now then
    redis.call('SET', KEYS[i], tostring(tat), 'PX', math.ceil((tat - now) * 1000))
    redis.call('ZADD', KEYS[1], 'XX', tat, KEYS[i])
  else
    redis.call('DEL', KEYS[i])
    redis.call('ZREM', KEYS[1], KEYS[i])
  end
end
return 0
"""


class RedisThrottle:
    """Buckets as Redis keys with their own expiry; check-and-charge is one Lua script."""

    def __init__(self, client: Any, *, limit: int, period: float, max_keys: int,
                 prefix: str = "{cvflow-login}:", clock: Clock = time.time) -> None:
        self.client = client
        self.limit = limit
        self.period = period
        self.interval = period / limit
        self.max_keys = max_keys
        # One hash tag: all keys of a script live on one node of a Redis cluster.
        self.prefix = prefix
        self.clock = clock
        self._attempt = client.register_script(_ATTEMPT)
        self._refund = client.register_script(_REFUND)

    @classmethod
    def create(cls, url: str, **kwargs: Any) -> RedisThrottle:
        import redis

        return cls(redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5), **kwargs)

    def close(self) -> None:
        """Close the client's connections (the app's lifespan calls this at shutdown)."""
        self.client.close()

    def _keys(self, keys: Iterable[str]) -> list[str]:
        return [self.prefix + "index", *(self.prefix + k for k in sorted(set(keys)))]

    def attempt(self, keys: Iterable[str]) -> Verdict:
        wait = float(self._call(self._attempt, keys, [self.max_keys]))
        return Verdict(True) if wait <= 0 else Verdict(False, _retry_after(wait))

    def refund(self, keys: Iterable[str]) -> None:
        self._call(self._refund, keys, [])

    def _call(self, script: Any, keys: Iterable[str], extra: list[Any]) -> Any:
        import redis

        try:
            return script(keys=self._keys(keys), args=[repr(self.clock()), repr(self.interval),
                                                        repr(self.period), *extra])
        except redis.RedisError as exc:
            # Fail closed: without its limiter, sign-in is refused rather than left open.
            raise HubError("limiter_unavailable") from exc


def open_throttle(settings: Settings, engine: Engine, *, clock: Clock = time.time) -> Throttle:
    """The limiter the settings ask for: Redis when ``redis_url`` is set, else the database."""
    if settings.login_rate_limit <= 0:
        return Unlimited()
    kwargs: dict[str, Any] = {"limit": settings.login_rate_limit, "period": settings.login_rate_window,
                              "max_keys": settings.login_throttle_max_keys, "clock": clock}
    if settings.redis_url:
        return RedisThrottle.create(settings.redis_url, **kwargs)
    return DatabaseThrottle(engine, **kwargs)
