//! The Lua scripts tcvnc runs in Redis: every check-and-take is one script, so it is
//! atomic across replicas, and every time is Redis's own (`redis.call('TIME')`), so the
//! replicas' clocks never matter. Every script answers `{status, now_ms, n, text}`.
//!
//! Scripts that hand out something scarce (a URL, a console) start with the epoch
//! prelude: `KEYS[1]` the epoch key; `ARGV[1]` the epoch the caller synced, `ARGV[2]` the
//! prefix of the synced sets, `ARGV[3]` `fleet.replicas`, `ARGV[4]` the window in ms. It
//! answers `resync` when the caller's epoch is not Redis's (Redis lost its data, or the
//! caller never synced), and `rebuilding` (with the ms until a minute has passed) while
//! fewer than `replicas` replicas have put their state back.

use std::sync::LazyLock;

use redis::Script;

macro_rules! now_ms {
    () => {
        "local t = redis.call('TIME')\n\
         local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    };
}

macro_rules! prelude {
    () => {
        concat!(
            now_ms!(),
            "local epoch = redis.call('GET', KEYS[1])\n\
             if not epoch or epoch ~= ARGV[1] then return {'resync', now, 0, ''} end\n\
             local age = now - tonumber(epoch)\n\
             local window = tonumber(ARGV[4])\n\
             if age < window and redis.call('SCARD', ARGV[2] .. epoch) < tonumber(ARGV[3]) then\n\
               return {'rebuilding', now, window - age, ''}\n\
             end\n"
        )
    };
}

/// The epoch, or `""`.
pub(crate) static PROBE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        now_ms!(),
        "return {'ok', now, 0, redis.call('GET', KEYS[1]) or ''}\n"
    ))
});

/// Creates the epoch when missing (`n` = 1), puts back the caller's URL entries
/// (`e key member score`, those younger than a window) and claims (`l key value ms`,
/// only where nobody holds one), and signs the epoch's synced set.
/// `ARGV[1]` synced prefix, `ARGV[2]` replica, `ARGV[3]` window ms, then the quads.
pub(crate) static RESYNC: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        now_ms!(),
        r#"
local window = tonumber(ARGV[3])
local epoch = redis.call('GET', KEYS[1])
local fresh = 0
if not epoch then
  epoch = tostring(now)
  redis.call('SET', KEYS[1], epoch)
  fresh = 1
end
for i = 4, #ARGV - 3, 4 do
  local key = ARGV[i + 1]
  if ARGV[i] == 'e' then
    local score = tonumber(ARGV[i + 3])
    if score > now - window then
      redis.call('ZADD', key, 'NX', score, ARGV[i + 2])
      local ttl = score - now + window
      if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
    end
  else
    redis.call('SET', key, ARGV[i + 2], 'NX', 'PX', ARGV[i + 3])
  end
end
local synced = ARGV[1] .. epoch
redis.call('SADD', synced, ARGV[2])
redis.call('PEXPIRE', synced, 2 * window)
return {'ok', now, fresh, epoch}
"#
    ))
});

/// The URL window: takes one entry when fewer than `limit` lie in the last window
/// (`ok`, `n` = URLs left), else `wait` with the ms until one ages out. A pending entry
/// is scored at its take plus the horizon (the latest its call can end), so a replica
/// that dies mid-call frees it by itself; settling restamps it with the call's end.
/// `KEYS[2]` the window; `ARGV[5]` limit, `ARGV[6]` horizon ms, `ARGV[7]` member.
pub(crate) static WINDOW_TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        r#"
local key = KEYS[2]
local limit = tonumber(ARGV[5])
local horizon = tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now + horizon, ARGV[7])
  local ttl = window + horizon
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
  return {'ok', now, limit - count - 1, ''}
end
local e = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
local score = tonumber(e[2])
local free_at = score + window
if score > now then free_at = math.max(score - horizon + window, now + 100) end
return {'wait', now, free_at - now, ''}
"#
    ))
});

/// The URLs left in a window now (`n`), without taking one. `KEYS[1]` the window,
/// `ARGV[1]` limit, `ARGV[2]` window ms.
pub(crate) static WINDOW_LEFT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        now_ms!(),
        r#"
local count = redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[2]) + 1, '+inf')
return {'ok', now, math.max(tonumber(ARGV[1]) - count, 0), ''}
"#
    ))
});

/// Restamps an entry with now (its call ended). `KEYS[1]` the window or API log,
/// `ARGV[1]` member, `ARGV[2]` the least TTL the key keeps (ms).
pub(crate) static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        now_ms!(),
        r#"
redis.call('ZADD', KEYS[1], now, ARGV[1])
local ttl = tonumber(ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return {'ok', now, 0, ''}
"#
    ))
});

/// Removes an entry (nothing left the host). `KEYS[1]` the log, `KEYS[2]` (optional) a
/// spacing key to clear; `ARGV[1]` member.
pub(crate) static REFUND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        now_ms!(),
        r#"
redis.call('ZREM', KEYS[1], ARGV[1])
if KEYS[2] then redis.call('DEL', KEYS[2]) end
return {'ok', now, 0, ''}
"#
    ))
});

/// The API rate: admits when fewer than `rate` requests are in flight or ended less
/// than the window ago and the spacing allows (`ok`); else `wait` with the ms to wait
/// (`-1`: a request in flight holds the window; ask again shortly). `KEYS[1]` the log,
/// `KEYS[2]` the next-send key; `ARGV[1]` rate, `ARGV[2]` window ms, `ARGV[3]` horizon ms,
/// `ARGV[4]` member, `ARGV[5]` spacing ms.
pub(crate) static API_ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        now_ms!(),
        r#"
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local horizon = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
local nxt = tonumber(redis.call('GET', KEYS[2]) or '0')
if count < rate and now >= nxt then
  redis.call('ZADD', key, now + horizon, ARGV[4])
  local ttl = window + horizon
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
  redis.call('SET', KEYS[2], now + tonumber(ARGV[5]), 'PX', window)
  return {'ok', now, 0, ''}
end
if count < rate then return {'wait', now, nxt - now, ''} end
local e = redis.call('ZRANGE', key, count - rate, count - rate, 'WITHSCORES')
local score = tonumber(e[2])
if score > now then return {'wait', now, -1, ''} end
return {'wait', now, math.max(score + window - now, nxt - now), ''}
"#
    ))
});

/// A console claim: `SET NX PX` of `token\nsince\nreplica\nwho\nip\nclosing` (`ok`, the
/// value in `text`), else `busy` with the holder's value and its TTL. `KEYS[2]` the
/// lease; `ARGV[5]` token, `ARGV[6]` `replica\nwho\nip`, `ARGV[7]` lease ms.
pub(crate) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        r#"
local value = ARGV[5] .. '\n' .. tostring(now) .. '\n' .. ARGV[6] .. '\n0'
if redis.call('SET', KEYS[2], value, 'NX', 'PX', ARGV[7]) then
  return {'ok', now, 0, value}
end
local held = redis.call('GET', KEYS[2])
if not held then return {'retry', now, 0, ''} end
return {'busy', now, redis.call('PTTL', KEYS[2]), held}
"#
    ))
});

/// Renews (or rewrites, e.g. to mark it closing) the caller's claim: `ok` with `n` = 1,
/// or 2 when it had vanished and was taken again; `lost` when another holds it.
/// `KEYS[1]` the lease; `ARGV[1]` `token\n`, `ARGV[2]` the value, `ARGV[3]` lease ms.
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        now_ms!(),
        r#"
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, 1, #ARGV[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return {'ok', now, 1, ''}
end
if not held and redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return {'ok', now, 2, ''}
end
return {'lost', now, 0, held or ''}
"#
    ))
});

/// Compare-and-delete of the caller's claim (`n` = 1 when it was still the holder).
/// `KEYS[1]` the lease; `ARGV[1]` `token\n`.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        now_ms!(),
        r#"
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, 1, #ARGV[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return {'ok', now, 1, ''}
end
return {'ok', now, 0, ''}
"#
    ))
});
