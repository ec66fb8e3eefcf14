//! The Lua scripts of the challenge store: each change to a user's
//! challenges is one script, so it is atomic across the instances of a pool.
//! They check nothing cryptographic (Redis never holds a key): what they
//! return is checked in Rust before it counts (see the parent module).

/// The fields of a challenge record a script reads back, in the order
/// [`super::RedisStore::checked`] takes them (after the State): the fields
/// the MAC covers, in `challenge_fields` order, then the MAC (`m`) and the
/// link mark (`k`). A new covered field goes before `m`, here and in
/// `challenge_fields` (and `READ_FIELDS` grows by one).
macro_rules! record_fields {
    () => {
        "'u', 'd', 'e', 'o', 'p', 'n', 'm', 'k'"
    };
}

/// KEYS[1] user list, KEYS[2] link (empty without), KEYS[3] the user's mail
/// window, KEYS[4] the address's, KEYS[5] the deny record (empty without),
/// KEYS[6] the mail stream (empty: the caller queues the mail); ARGV prefix,
/// state, user, digest, validity ms, blocking ms, max open, MAC, expires
/// (Unix ms), origin, then the throttles (per hour, in five minutes, per
/// address per hour, 0: no limit; whether an address was given), then
/// ARGV[15..18] `link::LinkArgs` (all empty for a code challenge), then
/// ARGV[19..21] the queue's limit, the stream's TTL ms and the sealed job
/// (as `redis::mail`'s PUSH adds it), then ARGV[22..23] the policy's name
/// (`p`, empty: none) and max attempts (`n`), then ARGV[24] the deny
/// record's TTL ms and ARGV[25..] its (field, value) pairs. When the queue is full,
/// returns `q` and opens and counts nothing. While the newest challenge
/// blocks, returns `=` when it is of the same origin (`!` when not) and its
/// record as [`DIGESTS`] reads one, to be checked (it may be forged), so that
/// no second read is needed. When the mail would pass a throttle, returns `t`
/// and the limit (1 hour, 2 five minutes, 3 address) and opens nothing; else
/// counts the mail in the windows (sorted sets of send times, kept an hour),
/// opens (and counts it in the open set until it expires) and returns nil.
pub(super) const OPEN: &str = concat!(
    r"
local p = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = {}
for _, tx in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if redis.call('HGET', p .. 'c:' .. tx, 'u') == ARGV[3] then live[#live + 1] = tx
  else redis.call('LREM', KEYS[1], 0, tx) end
end
if #live > 0 then
  local c = p .. 'c:' .. live[#live]
  local b = tonumber(redis.call('HGET', c, 'b'))
  if b and b > now then
    local r = redis.call('HMGET', c, ",
    record_fields!(),
    r")
    local out = {'!', live[#live]}
    if r[4] == ARGV[10] then out[1] = '=' end
    for i = 1, #r do out[#out + 1] = r[i] or '' end
    return out
  end
end
local i = 1
while #live - i + 1 >= tonumber(ARGV[7]) do
  redis.call('DEL', p .. 'c:' .. live[i])
  redis.call('LREM', KEYS[1], 0, live[i])
  redis.call('ZREM', p .. 'open', live[i])
  i = i + 1
end
local hour, five = 3600000, 300000
local per_hour, per_five, per_ip = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - hour)
if per_hour > 0 and redis.call('ZCARD', KEYS[3]) >= per_hour then return {'t', '1'} end
if per_five > 0 and redis.call('ZCOUNT', KEYS[3], now - five + 1, '+inf') >= per_five then return {'t', '2'} end
local by_ip = ARGV[14] == '1' and per_ip > 0
if by_ip then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - hour)
  if redis.call('ZCARD', KEYS[4]) >= per_ip then return {'t', '3'} end
end
if KEYS[6] ~= '' and redis.call('XLEN', KEYS[6]) >= tonumber(ARGV[19]) then return {'q'} end
local member = now .. ':' .. redis.call('INCR', KEYS[3] .. ':seq')
redis.call('PEXPIRE', KEYS[3] .. ':seq', hour)
redis.call('ZADD', KEYS[3], now, member)
redis.call('PEXPIRE', KEYS[3], hour)
if by_ip then
  redis.call('ZADD', KEYS[4], now, member)
  redis.call('PEXPIRE', KEYS[4], hour)
end
local c = p .. 'c:' .. ARGV[2]
redis.call('HSET', c, 'u', ARGV[3], 'd', ARGV[4], 'e', ARGV[9], 'o', ARGV[10], 'p', ARGV[22], 'n', ARGV[23], 'm', ARGV[8], 'b', now + tonumber(ARGV[6]), 'a', 0)
redis.call('PEXPIRE', c, ARGV[5])
if ARGV[15] ~= '' then
  redis.call('HSET', c, 'k', ARGV[15])
  redis.call('HSET', KEYS[2], 't', ARGV[2], 'u', ARGV[3], 'o', ARGV[16], 'm', ARGV[17])
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[5]) + tonumber(ARGV[18]))
end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', p .. 'open', now + tonumber(ARGV[5]), ARGV[2])
if redis.call('PTTL', p .. 'open') < tonumber(ARGV[5]) then redis.call('PEXPIRE', p .. 'open', ARGV[5]) end
if KEYS[5] ~= '' then
  local fv = {}
  for i = 25, #ARGV do fv[#fv + 1] = ARGV[i] end
  redis.call('HSET', KEYS[5], unpack(fv))
  redis.call('PEXPIRE', KEYS[5], ARGV[24])
end
if KEYS[6] ~= '' then
  redis.call('XADD', KEYS[6], '*', 'job', ARGV[21])
  redis.call('PEXPIRE', KEYS[6], ARGV[20])
end
return false
"
);

/// KEYS[1] user list, KEYS[2] the user's lock (empty: not asked); ARGV
/// prefix. Returns `1` alone when the user is locked; else `0`, then
/// `READ_FIELDS` values per challenge of the list: State, user, digest,
/// expires, origin, policy, max attempts, MAC, link mark (empty: none).
pub(super) const DIGESTS: &str = concat!(
    r"
if KEYS[2] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then return {'1'} end
local out = {'0'}
for _, tx in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local r = redis.call('HMGET', ARGV[1] .. 'c:' .. tx, ",
    record_fields!(),
    r")
  if r[2] then
    out[#out + 1] = tx
    for i = 1, #r do out[#out + 1] = r[i] or '' end
  end
end
return out
"
);

/// Lua that closes every challenge of user ARGV[2] in the list KEYS[1]
/// (with `p` the key prefix): deletes each record that is the user's (an
/// entry of another user's, copied into the list, is left alone), takes it
/// out of the open set, and deletes the list. CONSUME and the deny page's
/// close both end a login this way.
macro_rules! close_all_of_user {
    () => {
        r"for _, tx in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local c = p .. 'c:' .. tx
  if redis.call('HGET', c, 'u') == ARGV[2] then
    redis.call('DEL', c)
    redis.call('ZREM', p .. 'open', tx)
  end
end
redis.call('DEL', KEYS[1])
"
    };
}
pub(super) use close_all_of_user;

/// KEYS[1] user list, KEYS[2] the user's failures in a row; ARGV prefix,
/// user, state, matched. Closes all of the user's challenges if both are
/// still open and the user's, and deletes the failures (a login succeeded);
/// 1 when it did. An entry of another user's (copied into the list) is left
/// alone.
pub(super) const CONSUME: &str = concat!(
    r"
local p = ARGV[1]
if redis.call('HGET', p .. 'c:' .. ARGV[3], 'u') ~= ARGV[2] then return 0 end
if redis.call('HGET', p .. 'c:' .. ARGV[4], 'u') ~= ARGV[2] then return 0 end
",
    close_all_of_user!(),
    r"redis.call('DEL', KEYS[2])
return 1
"
);

/// KEYS[1] user list (KEYS[2] unused); ARGV prefix, user, state, max attempts. -1: not open;
/// 0: one attempt used; 1: that was the last, the challenge is closed.
pub(super) const WRONG: &str = r"
local c = ARGV[1] .. 'c:' .. ARGV[3]
if redis.call('HGET', c, 'u') ~= ARGV[2] then return -1 end
if redis.call('HINCRBY', c, 'a', 1) >= tonumber(ARGV[4]) then
  redis.call('DEL', c)
  redis.call('LREM', KEYS[1], 0, ARGV[3])
  redis.call('ZREM', ARGV[1] .. 'open', ARGV[3])
  return 1
end
return 0
";

/// The answer to a State this instance opened, in one step. KEYS[1] user
/// list, KEYS[2] the user's failures in a row, KEYS[3] the user's lock; ARGV
/// prefix, user, State, the pending link mark (empty for a code challenge),
/// the confirmed mark, what to do (`a` consume, `w` count a wrong attempt,
/// `k` a link challenge: consume if confirmed), max attempts, then (from
/// ARGV[8]) the record's (field, value) pairs as this instance wrote them:
/// the fields the MAC covers and the MAC. Returns:
/// - `l`: the user is locked (nothing compared or counted);
/// - `u`: no such challenge (closed, expired);
/// - `r`: the record is not, field for field, the one written: nothing
///   done, the caller reads and checks it;
/// - `p`: a link challenge not confirmed yet (nothing counted);
/// - `a`: all of the user's challenges closed, the failures deleted;
/// - `w0`/`w1` (`w1`: that was its last attempt, it is closed), then the
///   records of the user's other challenges as [`DIGESTS`] returns them, so
///   that a code of an older mail is found without another read.
///
/// The code was compared by the caller, against the digest it wrote;
/// Redis only checks that the record is still that one.
pub(super) const ANSWER: &str = concat!(
    r"
local p = ARGV[1]
if redis.call('EXISTS', KEYS[3]) == 1 then return {'l'} end
local c = p .. 'c:' .. ARGV[3]
if redis.call('EXISTS', c) == 0 then return {'u'} end
for i = 8, #ARGV, 2 do
  if redis.call('HGET', c, ARGV[i]) ~= ARGV[i + 1] then return {'r'} end
end
local k = redis.call('HGET', c, 'k') or ''
if ARGV[6] == 'k' then
  if k == ARGV[4] then return {'p'} end
  if k ~= ARGV[5] then return {'r'} end
elseif k ~= '' then return {'r'} end
if ARGV[6] ~= 'w' then
",
    close_all_of_user!(),
    r"  redis.call('DEL', KEYS[2])
  return {'a'}
end
local out = {'w0'}
if redis.call('HINCRBY', c, 'a', 1) >= tonumber(ARGV[7]) then
  redis.call('DEL', c)
  redis.call('LREM', KEYS[1], 0, ARGV[3])
  redis.call('ZREM', p .. 'open', ARGV[3])
  out[1] = 'w1'
end
for _, tx in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local o = redis.call('HMGET', p .. 'c:' .. tx, ",
    record_fields!(),
    r")
  if tx ~= ARGV[3] and o[2] then
    out[#out + 1] = tx
    for i = 1, #o do out[#out + 1] = o[i] or '' end
  end
end
return out
"
);
