//! The Redis store: a single server (`redis://`, `rediss://`), a Redis Cluster
//! (`redis+cluster://`) or a primary behind Sentinel (`redis+sentinel://`, see [`crate::sentinel`]),
//! multiplexed connections that reconnect on their own, and short timeouts so an unreachable
//! Redis fails requests fast instead of queueing them.

use crate::sentinel::{self, PrimaryConnection, SentinelAccess};
use crate::{
    FamilyLayout, FamilyMember, Issue, Issued, Joining, RecordKind, Store, StoreError,
    TenantBundle, TenantSettings, Version, redact_url,
};
use async_trait::async_trait;
use gatehouse_core::keys::SigningKeyRecord;
use gatehouse_core::token::AccessTokenClaims;
use gatehouse_core::{ClientConfig, TenantConfig};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands, Cmd, Pipeline, RedisFuture, Value};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The hash of tenant name → configuration version (plus the `.seq` counter), in its own slot.
const TENANTS_KEY: &str = "{gatehouse}:tenants";
/// Field of [`TENANTS_KEY`] holding the version counter; not a valid tenant name.
const SEQUENCE_FIELD: &str = ".seq";

/// Bumps a tenant's version from the shared counter, atomically, in the `{gatehouse}` slot.
const BUMP_SCRIPT: &str = r"
local v = redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
redis.call('HSET', KEYS[1], ARGV[1], v)
return v";

fn config_key(t: &str) -> String {
    format!("{{t:{t}}}:config")
}
fn keys_key(t: &str) -> String {
    format!("{{t:{t}}}:keys")
}
fn clients_key(t: &str) -> String {
    format!("{{t:{t}}}:clients")
}
fn opaque_key(t: &str, id: &str) -> String {
    format!("{{t:{t}}}:at:{id}")
}
fn revoked_key(t: &str, jti: &str) -> String {
    format!("{{t:{t}}}:rv:{jti}")
}
fn failures_key(t: &str, key: &str) -> String {
    format!("{{t:{t}}}:fail:{key}")
}
fn record_key(t: &str, kind: RecordKind, id: &str) -> String {
    format!("{{t:{t}}}:{}:{id}", kind.prefix())
}
fn used_key(t: &str, kind: RecordKind, id: &str) -> String {
    format!("{{t:{t}}}:{}.used:{id}", kind.prefix())
}
fn unanswered_key(t: &str, kind: RecordKind, id: &str) -> String {
    format!("{{t:{t}}}:{}.unanswered:{id}", kind.prefix())
}
/// A grant family, one hash. Written by [`FamilyLayout::Compact`]: `b` (known: started, or a
/// token issued into it), `r` (revoked), `c` (the id of its current refresh token: any other
/// of its refresh tokens is spent), `p` and `m` (the id of the code or refresh token last
/// spent, and its mark, see [`Spend::family`]): a handful of fields however often it
/// rotates, so Redis keeps it compact. Written by [`FamilyLayout::Hash`], the previous
/// version's: `k` (known), `r`, `a:<jti>` = `exp` for each access token issued into it, and
/// `u:<id>` = the mark of each code or refresh token of the family spent: two fields more per
/// rotation. One key either way, so issuing reads everything it decides on with one command
/// and writes with one more.
fn family_key(t: &str, family: &str) -> String {
    format!("{{t:{t}}}:fam:{family}")
}
/// The layout before a family was one hash: its tokens as a set of `exp:jti` (with the member
/// `started` for a family started before its first token), its revocation as its own key, and
/// its spent marks as `used_key`s. Families written so are read and kept so until they expire.
fn legacy_family_tokens_key(t: &str, family: &str) -> String {
    format!("{{t:{t}}}:rfa:{family}")
}
fn legacy_family_revoked_key(t: &str, family: &str) -> String {
    format!("{{t:{t}}}:rfr:{family}")
}
/// Up to when a user's sign-ins are over (see `Store::sign_out_user`).
fn signed_out_key(t: &str, user: &str) -> String {
    format!("{{t:{t}}}:sout:{user}")
}

/// One step of a tenant purge: a SCAN batch over the tenant's keys (all in one slot, so the
/// script runs on the node that holds them) and UNLINK of what it found. Returns the next
/// cursor and the number removed; bounded work per call keeps Redis responsive.
const PURGE_SCRIPT: &str = r"
local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', 1000)
for _, k in ipairs(r[2]) do redis.call('UNLINK', k) end
return {r[1], #r[2]}";

/// Issuing tokens, atomically (see `Store::issue`).
///
/// Keys: 1 the separate used mark of what is spent, 2 and 3 a family's revoked mark and token
/// set in the legacy layout, 4 the opaque token, 5 the unanswered mark, 6 the user's
/// signed-out mark, 7 the family's hash; absent parts get placeholder keys in the tenant's
/// slot.
///
/// ARGV: 1 whether something is spent, 2 until when its separate mark is kept, 3 how the
/// family is joined (`new`: started now, for ARGV[5]; `started`: started with a sealed code,
/// it must exist and its lifetime grows to ARGV[5]; `existing`: a rotation, it must exist and
/// keeps its lifetime; empty: no family), 4 the access token's jti, 5 the family's lifetime,
/// 6–8 the opaque token (whether, value, exp), 9 the spending's mark `attempt[ successor-id]`,
/// 10 the prefix of a refresh token's separate used mark, 11 when the user signed in (or
/// empty), 12 until when a retired successor's separate mark is kept, 13 whether the spent
/// mark is kept in the family's hash, 14 the spent id, 15 the access token's exp, 16 whether a
/// family started here is a hash (see [`crate::FamilyLayout`]), 17 the prefix of a family's
/// hash, 18 the family's id, 19 whether the spending is a refusal.
///
/// A family kept as a hash is decided on with one HMGET (known, revoked, the spent mark) and
/// written with one HSET. A family in the layout of sets (no hash, its set exists) is read and
/// written in its own keys, marks included. A set that is gone, expired or lost with the
/// store's data refuses `started` and `existing` both. When the spent mark exists and the
/// spending was recorded as unanswered (KEYS[5], see `Store::mark_unanswered`), the
/// presentation is a retry: the successor the lost answer carried gets its own mark where its
/// presentation looks (its family's hash, or a key of its own; a compact family, see
/// [`ISSUE_COMPACT_SCRIPT`], no longer has it as its current one) unless it was presented
/// already, which makes the retry a reuse after all. A spending kept apart (a device code, a code from
/// before sealed codes) that started a hash family notes that family's id after the
/// successor's, since a retry starts a family of its own (a noted family that is gone, lost
/// with the store's data, gets the retired mark as a key of its own). A family keeps the layout it
/// started in: `new` joins a set that exists already (the retry of a code from before sealed
/// codes, first redeemed by a server writing sets) as a set. A refusal (the attempt
/// [`crate::Spend::REFUSED`]) only spends: a mark found makes it a replay even when an answer
/// was lost, as before families were hashes.
const ISSUE_SCRIPT: &str = r"
if ARGV[11] ~= '' then
  local out = redis.call('GET', KEYS[6])
  if out and tonumber(ARGV[11]) <= tonumber(out) then return 'signed_out' end
end
local join = ARGV[3]
local f = {false, false, false}
if join ~= '' or ARGV[13] == '1' then
  f = redis.call('HMGET', KEYS[7], 'k', 'r', 'u:' .. ARGV[14])
end
if join ~= '' and f[2] then return 'revoked' end
local hashed = f[1] and true or false
if join ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then return 'revoked' end
if not hashed and join ~= '' then
  if join == 'new' then
    if redis.call('HEXISTS', KEYS[7], 'b') == 1 then return 'spent' end
    hashed = ARGV[16] == '1' and redis.call('EXISTS', KEYS[3]) == 0
  elseif redis.call('EXISTS', KEYS[3]) == 0 then
    return 'unknown'
  end
end
local in_hash = hashed and ARGV[13] == '1'
local note = ARGV[9]
if hashed and not in_hash and string.find(note, ' ', 1, true) then
  note = note .. ' ' .. ARGV[18]
end
local fields = {}
if ARGV[1] == '1' then
  local mark = false
  if in_hash then
    mark = f[3]
  elseif not redis.call('SET', KEYS[1], note, 'NX', 'EXAT', ARGV[2]) then
    mark = redis.call('GET', KEYS[1]) or ''
  end
  if mark then
    if ARGV[19] == '1' or redis.call('EXISTS', KEYS[5]) == 0 then return 'spent' end
    local sep = string.find(mark, ' ', 1, true)
    if sep then
      local lost = string.sub(mark, sep + 1)
      local at = string.find(lost, ' ', 1, true)
      local hash = in_hash and KEYS[7]
      local compact = false
      if at then
        local noted = ARGV[17] .. string.sub(lost, at + 1)
        local n = redis.call('HMGET', noted, 'k', 'b', 'c')
        lost = string.sub(lost, 1, at - 1)
        if n[1] then
          hash = noted
        elseif n[2] then
          if n[3] ~= lost then return 'spent' end
          compact = noted
        end
      end
      if compact then
        redis.call('HSET', compact, 'c', '-')
      elseif hash then
        if redis.call('HSETNX', hash, 'u:' .. lost, 'superseded') == 0 then return 'spent' end
      elseif not redis.call('SET', ARGV[10] .. lost, 'superseded', 'NX', 'EXAT', ARGV[12]) then
        return 'spent'
      end
    end
    redis.call('DEL', KEYS[5])
    if not in_hash then redis.call('SET', KEYS[1], note, 'KEEPTTL') end
  end
  if in_hash then
    fields[#fields + 1] = 'u:' .. ARGV[14]
    fields[#fields + 1] = ARGV[9]
  end
end
if join ~= '' then
  if hashed then
    fields[#fields + 1] = 'a:' .. ARGV[4]
    fields[#fields + 1] = ARGV[15]
    if join == 'new' then
      fields[#fields + 1] = 'k'
      fields[#fields + 1] = '1'
    end
  else
    redis.call('SADD', KEYS[3], ARGV[15] .. ':' .. ARGV[4])
    if join == 'new' then redis.call('EXPIREAT', KEYS[3], ARGV[5]) end
    if join == 'started' then redis.call('EXPIREAT', KEYS[3], ARGV[5], 'GT') end
  end
end
if #fields > 0 then redis.call('HSET', KEYS[7], unpack(fields)) end
if hashed and join == 'new' then redis.call('EXPIREAT', KEYS[7], ARGV[5]) end
if hashed and join == 'started' then redis.call('EXPIREAT', KEYS[7], ARGV[5], 'GT') end
if ARGV[6] == '1' then redis.call('SET', KEYS[4], ARGV[7], 'EXAT', ARGV[8]) end
return 'done'";

/// The common case of [`ISSUE_SCRIPT`], alone: a rotation, or the exchange of a sealed code,
/// in a family kept as a hash whose spent mark is not there yet. It reads and writes what the
/// full script would in that case, and answers a sign-out or a revoked family as it would,
/// with four keys and nine arguments instead of seven and nineteen: a script's cost in Redis
/// is mostly its calls and arguments, and this is the path every rotation takes. Anything else
/// (a family of sets, or not known; a mark found: a replay or a retry) returns `other` having
/// written nothing, and the full script decides.
///
/// Keys: 1 the family's hash, 2 the opaque token (or a placeholder), 3 the user's signed-out
/// mark (or a placeholder), 4 the family's revoked mark kept apart (which servers from before
/// the hash write). ARGV: 1 the spent id, 2 its mark, 3 the access token's jti, 4 its exp,
/// 5 the family's lifetime when a sealed code's family grows to it (or empty), then as every
/// short script (see `RedisStore::issue_common_case`): 6 whether an opaque token is written,
/// 7 its value, 8 its exp, 9 when the user signed in (or empty).
const ISSUE_IN_FAMILY_SCRIPT: &str = r"
if ARGV[9] ~= '' then
  local out = redis.call('GET', KEYS[3])
  if out and tonumber(ARGV[9]) <= tonumber(out) then return 'signed_out' end
end
local f = redis.call('HMGET', KEYS[1], 'k', 'r', 'u:' .. ARGV[1])
if f[2] or redis.call('EXISTS', KEYS[4]) == 1 then return 'revoked' end
if not f[1] or f[3] then return 'other' end
redis.call('HSET', KEYS[1], 'u:' .. ARGV[1], ARGV[2], 'a:' .. ARGV[3], ARGV[4])
if ARGV[5] ~= '' then redis.call('EXPIREAT', KEYS[1], ARGV[5], 'GT') end
if ARGV[6] == '1' then redis.call('SET', KEYS[2], ARGV[7], 'EXAT', ARGV[8]) end
return 'done'";

/// Issuing into a family of [`FamilyLayout::Compact`] (see `Store::issue`), or starting one.
/// Whatever the full [`ISSUE_SCRIPT`] decides for a family of an earlier layout (a hash with
/// `k`, a set, one not known) returns `other` having written nothing, and that script decides.
///
/// A refresh token of the family is fresh when it is the family's current one (`c`), a code
/// when nothing of its family was spent yet; the mark found for anything else is the last
/// spending's attempt (`m`) if it spent this one, else `superseded`. A mark found is a replay
/// unless the spending was recorded as unanswered (KEYS[5]): the refresh token the lost
/// answer carried was then never presented (presenting it would have made it the last one
/// spent), and the presentation issues again, its successor taking that token's place as the
/// current one. The mark is the attempt alone, so the hash stays within Redis's compact
/// encoding (64 bytes a value by default) with real ids. A spending kept apart (a device
/// code, a code from before sealed codes) notes in its own mark the refresh token it issued
/// and the family that token started, whose current token a retry retires.
///
/// Keys: 1 the family's hash, 2 the opaque token, 3 the user's signed-out mark, 4 the mark of
/// a spending kept apart, 5 its unanswered mark, 6 the family's token set in the layout of
/// sets (read only when a family starts), 7 its revoked mark kept apart (which servers of
/// earlier versions write when they revoke a family they take for one of sets, as they take
/// every compact one: found, it is copied into the family's hash, which lives as long as the
/// family's last access token, where the mark apart may not); absent parts get placeholder
/// keys in the tenant's slot.
///
/// ARGV: 1 the spent id (empty: nothing spent), 2 where its mark is kept (`family` or
/// `apart`), 3 what it is (`rt` or `code`), 4 its mark `attempt[ successor-id]`, 5 the id of
/// the refresh token issued (or empty), 6 how the family is joined (`new`, `started`,
/// `existing`, or empty when a refused code is only spent), 7 until when the family must be
/// kept from now (or empty), 8–10 the opaque token (whether, value, exp), 11 when the user
/// signed in (or empty), 12 until when a mark kept apart is kept, 13 whether the spending is
/// a refusal, 14 the prefix of a family's hash, 15 the family's id, 16 whether a family
/// started here is compact (else one not known is left to the full script).
const ISSUE_COMPACT_SCRIPT: &str = r"
if ARGV[11] ~= '' then
  local out = redis.call('GET', KEYS[3])
  if out and tonumber(ARGV[11]) <= tonumber(out) then return 'signed_out' end
end
local join = ARGV[6]
local f = redis.call('HMGET', KEYS[1], 'b', 'r', 'c', 'p', 'm', 'k')
if join ~= '' and f[2] then return 'revoked' end
if join ~= '' and redis.call('EXISTS', KEYS[7]) == 1 then
  if f[1] then redis.call('HSET', KEYS[1], 'r', '1') end
  return 'revoked'
end
if f[6] then return 'other' end
if not f[1] then
  if join ~= 'new' or ARGV[16] ~= '1' then return 'other' end
  if redis.call('EXISTS', KEYS[6]) == 1 then return 'other' end
end
local spent = ARGV[1]
local kept = ARGV[2] == 'family'
local note = ARGV[4]
if not kept and ARGV[5] ~= '' then note = note .. ' ' .. ARGV[15] end
local retire = false
if spent ~= '' then
  local mark = false
  if kept then
    if f[4] == spent then
      mark = f[5] or 'superseded'
    elseif ARGV[3] == 'rt' and f[3] ~= spent then
      mark = 'superseded'
    elseif ARGV[3] == 'code' and (f[3] or f[4]) then
      mark = 'superseded'
    end
  elseif not redis.call('SET', KEYS[4], note, 'NX', 'EXAT', ARGV[12]) then
    mark = redis.call('GET', KEYS[4]) or ''
  end
  if mark then
    if ARGV[13] == '1' or mark == 'superseded' or redis.call('EXISTS', KEYS[5]) == 0 then
      return 'spent'
    end
    local sep = string.find(mark, ' ', 1, true)
    if sep and not kept then
      local lost = string.sub(mark, sep + 1)
      local at = string.find(lost, ' ', 1, true)
      if not at then return 'other' end
      retire = ARGV[14] .. string.sub(lost, at + 1)
      lost = string.sub(lost, 1, at - 1)
      local n = redis.call('HMGET', retire, 'b', 'c', 'k')
      if n[3] then return 'other' end
      if not n[1] then
        retire = false
      elseif n[2] ~= lost then
        return 'spent'
      end
    end
    redis.call('DEL', KEYS[5])
    if not kept then redis.call('SET', KEYS[4], note, 'KEEPTTL') end
  end
end
if retire then redis.call('HSET', retire, 'c', '-') end
local fields = {}
if spent ~= '' and kept then
  fields[1] = 'p'
  fields[2] = spent
  fields[3] = 'm'
  fields[4] = string.match(ARGV[4], '^[^ ]*')
end
if join ~= '' and ARGV[5] ~= '' then
  fields[#fields + 1] = 'c'
  fields[#fields + 1] = ARGV[5]
end
if join ~= '' and not f[1] then
  fields[#fields + 1] = 'b'
  fields[#fields + 1] = '1'
end
if #fields > 0 then redis.call('HSET', KEYS[1], unpack(fields)) end
if join ~= '' and ARGV[7] ~= '' then
  if f[1] then
    redis.call('EXPIREAT', KEYS[1], ARGV[7], 'GT')
  else
    redis.call('EXPIREAT', KEYS[1], ARGV[7])
  end
end
if ARGV[8] == '1' then redis.call('SET', KEYS[2], ARGV[9], 'EXAT', ARGV[10]) end
return 'done'";

/// The common case of [`ISSUE_COMPACT_SCRIPT`], alone, as [`ISSUE_IN_FAMILY_SCRIPT`] is of
/// the full script: a rotation, or the exchange of a sealed code, in a compact family whose
/// presented token is fresh. It decides and writes what the compact script would in that
/// case with four keys and nine arguments instead of seven and sixteen (what the server
/// spends building an invocation counts as much as what Redis spends running it); anything
/// else returns `other` having written nothing, and the compact script decides.
///
/// Keys: 1 the family's hash, 2 the opaque token (or a placeholder), 3 the user's signed-out
/// mark (or a placeholder), 4 the family's revoked mark kept apart. ARGV: 1 the spent id, 2
/// what it is (`rt` or `code`), 3 the attempt, 4 the id of the refresh token issued (or
/// empty), 5 until when the family must be kept from now (or empty), then as every short
/// script: 6 whether an opaque token is written, 7 its value, 8 its exp, 9 when the user
/// signed in (or empty).
const ISSUE_IN_COMPACT_FAMILY_SCRIPT: &str = r"
if ARGV[9] ~= '' then
  local out = redis.call('GET', KEYS[3])
  if out and tonumber(ARGV[9]) <= tonumber(out) then return 'signed_out' end
end
local f = redis.call('HMGET', KEYS[1], 'b', 'r', 'c', 'p')
if f[2] then return 'revoked' end
if redis.call('EXISTS', KEYS[4]) == 1 then
  if f[1] then redis.call('HSET', KEYS[1], 'r', '1') end
  return 'revoked'
end
if not f[1] then return 'other' end
if ARGV[2] == 'rt' then
  if f[3] ~= ARGV[1] then return 'other' end
elseif f[3] or f[4] then
  return 'other'
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'p', ARGV[1], 'm', ARGV[3], 'c', ARGV[4])
else
  redis.call('HSET', KEYS[1], 'p', ARGV[1], 'm', ARGV[3])
end
if ARGV[5] ~= '' then redis.call('EXPIREAT', KEYS[1], ARGV[5], 'GT') end
if ARGV[6] == '1' then redis.call('SET', KEYS[2], ARGV[7], 'EXAT', ARGV[8]) end
return 'done'";

/// A sign-out mark that only moves forward (see `Store::sign_out_user`).
const SIGN_OUT_SCRIPT: &str = r"
local out = redis.call('GET', KEYS[1])
if not out or tonumber(out) <= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2])
end
return 1";

/// Revoking a family and, in the same step, every access token it issued (each revocation
/// mark lives until that token's `exp`). Keys: the family's hash, then its revoked mark and
/// token set in the layout of sets (see `legacy_family_tokens_key`). A hash family is marked
/// revoked in its hash (whose lifetime only grows); its access tokens, when it lists them (the
/// previous version's layout), get marks of their own, and when it does not, name it. Any
/// other family, known or not, gets the separate revoked mark, which servers writing sets and
/// servers from before hashes read, and the tokens of its set, if any, are revoked. ARGV:
/// until when the family is remembered as revoked, the prefix of a token's revocation mark.
const REVOKE_SCRIPT: &str = r"
local known = redis.call('HMGET', KEYS[1], 'k', 'b')
local hashed = known[1] or known[2]
local revoked = 0
if hashed then
  redis.call('HSET', KEYS[1], 'r', '1')
  redis.call('EXPIREAT', KEYS[1], ARGV[1], 'GT')
end
if known[1] then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'a:' then
      redis.call('SET', ARGV[2] .. string.sub(all[i], 3), '1', 'EXAT', all[i + 1])
      revoked = revoked + 1
    end
  end
end
if not hashed or redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('SET', KEYS[2], '1', 'EXAT', ARGV[1])
  for _, m in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    local sep = string.find(m, ':', 1, true)
    if sep then
      redis.call('SET', ARGV[2] .. string.sub(m, sep + 1), '1', 'EXAT', string.sub(m, 1, sep - 1))
      revoked = revoked + 1
    end
  end
end
return revoked";

/// Starting a family before its first token (see `Store::start_family`): known (ARGV[2] is
/// the field that says so in its layout, see `family_key`), and its lifetime only grows.
const START_FAMILY_SCRIPT: &str = r"
redis.call('HSET', KEYS[1], ARGV[2], '1')
redis.call('EXPIREAT', KEYS[1], ARGV[1], 'GT')
redis.call('EXPIREAT', KEYS[1], ARGV[1], 'NX')
return 1";

/// [`START_FAMILY_SCRIPT`] in the layout of sets (see [`FamilyLayout::Sets`]): a set exists
/// only with a member, so it gets `started` (no colon: no token's `exp:jti`).
const START_FAMILY_SET_SCRIPT: &str = r"
redis.call('SADD', KEYS[1], 'started')
redis.call('EXPIREAT', KEYS[1], ARGV[1], 'GT')
redis.call('EXPIREAT', KEYS[1], ARGV[1], 'NX')
return 1";

/// Whether a family is known and not revoked, in whichever layout it was written (see
/// `family_key`). Keys: its hash, its legacy revoked mark and token set.
const FAMILY_LIVE_SCRIPT: &str = r"
local f = redis.call('HMGET', KEYS[1], 'k', 'r', 'b')
if f[2] or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if f[1] or f[3] then return 1 end
return redis.call('EXISTS', KEYS[3])";

/// Whether an access token is revoked: its own mark, or its family's (in the family's hash,
/// or kept apart for a family of sets). Keys: the token's mark, the family's hash, the
/// family's mark kept apart. One command, where a pipeline of three would be three. A mark
/// apart found for a compact family (a server of an earlier version revoked it) is copied into
/// its hash, which lives as long as the family's last access token, where the mark may not.
const TOKEN_REVOKED_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
local f = redis.call('HMGET', KEYS[2], 'r', 'b')
if f[1] then return 1 end
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
if f[2] then redis.call('HSET', KEYS[2], 'r', '1') end
return 1";

/// INCR with the window set on the first failure only (Redis 7's `EXPIRE ... NX`).
const FAILURE_SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1], 'NX')
return n";

/// DECR that never goes below zero nor creates a counter (see `Store::forgive_failure`).
const FORGIVE_SCRIPT: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then return redis.call('DECR', KEYS[1]) end
return 0";

/// One connection type for both deployments, so every store method is written once.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(PrimaryConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
            Connection::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
            Connection::Sentinel(c) => c.get_db(),
        }
    }
}

/// A Redis (or Redis Cluster) store.
pub struct RedisStore {
    conn: Connection,
    new_families: FamilyLayout,
    bump: redis::Script,
    purge: redis::Script,
    issue: redis::Script,
    issue_in_family: redis::Script,
    issue_compact: redis::Script,
    issue_in_compact_family: redis::Script,
    revoke: redis::Script,
    start_family: redis::Script,
    start_family_set: redis::Script,
    family_live: redis::Script,
    token_revoked: redis::Script,
}

/// The mark a spending leaves: the attempt, and the refresh token it issued (which a retry of
/// a lost answer retires).
fn spending_mark(attempt: &str, successor: Option<&str>) -> String {
    match successor {
        Some(id) => format!("{attempt} {id}"),
        None => attempt.to_string(),
    }
}

/// Until when a compact family must be kept from now on, for a token joining it (empty: as
/// long as it is kept already): a family outlives every access token it issued, so that
/// revoking it reaches them all, and a family that starts, or a sealed code's family at its
/// exchange, lives as long as its refresh tokens may.
fn keep_until(member: FamilyMember<'_>) -> String {
    match member.joining {
        Joining::Existing if member.exp <= member.until => String::new(),
        _ => member.until.max(member.exp).max(1).to_string(),
    }
}

/// The spending and the family of an issue a short script decides: a code or refresh token
/// spent into the family it carries, which exists already (a rotation, a sealed code's
/// exchange), and no refusal.
fn common_case<'a>(issue: &Issue<'a>) -> Option<(crate::Spend<'a>, FamilyMember<'a>)> {
    let (spend, family) = (issue.spend?, issue.family?);
    (family.joining != Joining::Starts
        && spend.family == Some(family.family)
        && spend.attempt != crate::Spend::REFUSED)
        .then_some((spend, family))
}

/// A script's boolean argument.
fn flag(on: bool) -> &'static str {
    if on { "1" } else { "0" }
}

/// What an issuing script's answer means.
fn issued(outcome: &str) -> Issued {
    match outcome {
        "spent" => Issued::Spent,
        "revoked" => Issued::Revoked,
        "signed_out" => Issued::SignedOut,
        "unknown" => Issued::Unknown,
        _ => Issued::Done,
    }
}

#[allow(clippy::needless_pass_by_value)] // used as `.map_err(unavailable)`
fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn decode<T: DeserializeOwned>(key: &str, raw: &str) -> Result<T, StoreError> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        key: String::new(),
        reason: e.to_string(),
    })
}

impl RedisStore {
    /// Connects to a `redis://`, `rediss://`, `redis+cluster://` or `rediss+cluster://` URL,
    /// failing fast when nothing answers.
    pub async fn connect(url: &str, ca_pem: Option<&[u8]>) -> Result<Self, StoreError> {
        // A private CA: trusted instead of the web's roots.
        let certificates = ca_pem.map(|pem| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.to_vec()),
        });
        let invalid = |reason: String| StoreError::InvalidUrl {
            url: redact_url(url),
            reason,
        };
        let conn = if let Some(rest) = url
            .strip_prefix("redis+cluster://")
            .map(|r| ("redis", r))
            .or_else(|| url.strip_prefix("rediss+cluster://").map(|r| ("rediss", r)))
        {
            let (scheme, hosts) = rest;
            let nodes: Vec<String> = hosts
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| format!("{scheme}://{h}"))
                .collect();
            if nodes.is_empty() {
                return Err(invalid("no cluster nodes given".into()));
            }
            let mut builder = redis::cluster::ClusterClient::builder(nodes)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .retries(2);
            if let Some(certificates) = certificates {
                builder = builder.certs(certificates);
            }
            let client = builder.build().map_err(|e| invalid(e.to_string()))?;
            Connection::Cluster(client.get_async_connection().await.map_err(unavailable)?)
        } else {
            let client = match certificates {
                Some(certificates) => redis::Client::build_with_tls(url, certificates),
                None => redis::Client::open(url),
            }
            .map_err(|e| invalid(e.to_string()))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_millis(500));
            Connection::Single(
                ConnectionManager::new_with_config(client, config)
                    .await
                    .map_err(unavailable)?,
            )
        };
        Ok(Self::with(conn))
    }

    /// Connects to the primary the Sentinels of a `redis+sentinel://` or
    /// `rediss+sentinel://` URL name, and follows it through failovers.
    pub async fn connect_sentinel(
        url: &str,
        access: &crate::Access<'_>,
    ) -> Result<Self, StoreError> {
        let invalid = |reason: String| StoreError::InvalidUrl {
            url: redact_url(url),
            reason,
        };
        let parsed = sentinel::parse(url).map_err(invalid)?;
        if access.ca_pem.is_some() && !parsed.tls {
            return Err(invalid(
                "a CA file is for a TLS URL: rediss+sentinel://".to_string(),
            ));
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let sentinel_access = SentinelAccess {
            username: access.username,
            password: access.password,
            sentinel_password: access.sentinel_password,
            ca_pem: access.ca_pem.as_deref(),
        };
        let conn = PrimaryConnection::connect(&parsed, &sentinel_access, config)
            .await
            .map_err(unavailable)?;
        Ok(Self::with(Connection::Sentinel(conn)))
    }

    /// Sets what grant families started from now on are written as (see [`FamilyLayout`]).
    #[must_use]
    pub fn with_new_families(mut self, layout: FamilyLayout) -> Self {
        self.new_families = layout;
        self
    }

    fn with(conn: Connection) -> Self {
        RedisStore {
            conn,
            new_families: FamilyLayout::default(),
            bump: redis::Script::new(BUMP_SCRIPT),
            purge: redis::Script::new(PURGE_SCRIPT),
            issue: redis::Script::new(ISSUE_SCRIPT),
            issue_in_family: redis::Script::new(ISSUE_IN_FAMILY_SCRIPT),
            issue_compact: redis::Script::new(ISSUE_COMPACT_SCRIPT),
            issue_in_compact_family: redis::Script::new(ISSUE_IN_COMPACT_FAMILY_SCRIPT),
            revoke: redis::Script::new(REVOKE_SCRIPT),
            start_family: redis::Script::new(START_FAMILY_SCRIPT),
            start_family_set: redis::Script::new(START_FAMILY_SET_SCRIPT),
            family_live: redis::Script::new(FAMILY_LIVE_SCRIPT),
            token_revoked: redis::Script::new(TOKEN_REVOKED_SCRIPT),
        }
    }

    /// Issues through [`ISSUE_IN_FAMILY_SCRIPT`] when the issue is its common case; `None`
    /// when it is not, or the script found it is not.
    async fn issue_in_family(
        &self,
        tenant: &str,
        issue: &Issue<'_>,
        opaque: Option<&str>,
    ) -> Result<Option<Issued>, StoreError> {
        let Some((spend, family)) = common_case(issue) else {
            return Ok(None);
        };
        let grows_to = match family.joining {
            Joining::Started => family.until.max(1).to_string(),
            _ => String::new(),
        };
        let mark = spending_mark(spend.attempt, issue.successor);
        self.issue_common_case(&self.issue_in_family, tenant, issue, opaque, |invocation| {
            invocation
                .arg(spend.id)
                .arg(mark)
                .arg(family.jti)
                .arg(family.exp.max(1))
                .arg(grows_to);
        })
        .await
    }

    /// Issues through [`ISSUE_IN_COMPACT_FAMILY_SCRIPT`] when the issue is its common case;
    /// `None` when it is not, or the script found it is not.
    async fn issue_in_compact_family(
        &self,
        tenant: &str,
        issue: &Issue<'_>,
        opaque: Option<&str>,
    ) -> Result<Option<Issued>, StoreError> {
        let Some((spend, family)) = common_case(issue) else {
            return Ok(None);
        };
        let kind = if spend.kind == RecordKind::AuthorizationCode {
            "code"
        } else {
            "rt"
        };
        self.issue_common_case(
            &self.issue_in_compact_family,
            tenant,
            issue,
            opaque,
            |invocation| {
                invocation
                    .arg(spend.id)
                    .arg(kind)
                    .arg(spend.attempt)
                    .arg(issue.successor.unwrap_or_default())
                    .arg(keep_until(family));
            },
        )
        .await
    }

    /// Runs a short script on the common case of an issue (see [`common_case`]). Every short
    /// script takes the same keys (the family's hash, the opaque token, the user's signed-out
    /// mark, the family's revoked mark kept apart) and ends its arguments alike (the opaque
    /// token: whether, value, exp; when the user signed in); `head` gives the five between.
    async fn issue_common_case(
        &self,
        script: &redis::Script,
        tenant: &str,
        issue: &Issue<'_>,
        opaque: Option<&str>,
        head: impl FnOnce(&mut redis::ScriptInvocation<'_>),
    ) -> Result<Option<Issued>, StoreError> {
        let family = issue.family.map_or("-", |f| f.family);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(family_key(tenant, family))
            .key(opaque_key(tenant, issue.opaque.map_or("-", |o| o.0)))
            .key(signed_out_key(
                tenant,
                issue.signed_in.map_or("-", |(u, _)| u),
            ))
            .key(legacy_family_revoked_key(tenant, family));
        head(&mut invocation);
        invocation
            .arg(flag(opaque.is_some()))
            .arg(opaque.unwrap_or_default())
            .arg(issue.opaque.map_or(1, |o| o.1.exp.max(1)))
            .arg(
                issue
                    .signed_in
                    .map_or_else(String::new, |(_, at)| at.to_string()),
            );
        let mut conn = self.conn.clone();
        let outcome: String = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok((outcome != "other").then(|| issued(&outcome)))
    }

    /// Issues through [`ISSUE_COMPACT_SCRIPT`] when the issue touches a family (joins one, or
    /// spends a code kept with one); `None` when it does not, or the family turned out to be
    /// of an earlier layout.
    async fn issue_compact(
        &self,
        tenant: &str,
        issue: &Issue<'_>,
        opaque: Option<&str>,
    ) -> Result<Option<Issued>, StoreError> {
        let spend = issue.spend;
        let spend_family = spend.and_then(|s| s.family);
        let Some(family_id) = spend_family.or(issue.family.map(|f| f.family)) else {
            return Ok(None);
        };
        let keep_until = issue.family.map_or_else(String::new, keep_until);
        let (spent_kind, spent_id) =
            spend.map_or((RecordKind::RefreshToken, "-"), |s| (s.kind, s.id));
        let mut invocation = self.issue_compact.prepare_invoke();
        invocation
            .key(family_key(tenant, family_id))
            .key(opaque_key(tenant, issue.opaque.map_or("-", |o| o.0)))
            .key(signed_out_key(
                tenant,
                issue.signed_in.map_or("-", |(u, _)| u),
            ))
            .key(used_key(tenant, spent_kind, spent_id))
            .key(unanswered_key(tenant, spent_kind, spent_id))
            .key(legacy_family_tokens_key(tenant, family_id))
            .key(legacy_family_revoked_key(tenant, family_id))
            .arg(spend.map_or("", |s| s.id))
            .arg(if spend_family.is_some() {
                "family"
            } else {
                "apart"
            })
            .arg(if spent_kind == RecordKind::AuthorizationCode {
                "code"
            } else {
                "rt"
            })
            .arg(spend.map_or_else(String::new, |s| spending_mark(s.attempt, issue.successor)))
            .arg(issue.successor.unwrap_or_default())
            .arg(issue.family.map_or("", |f| match f.joining {
                Joining::Starts => "new",
                Joining::Started => "started",
                Joining::Existing => "existing",
            }))
            .arg(keep_until)
            .arg(flag(opaque.is_some()))
            .arg(opaque.unwrap_or_default())
            .arg(issue.opaque.map_or(1, |o| o.1.exp.max(1)))
            .arg(
                issue
                    .signed_in
                    .map_or_else(String::new, |(_, at)| at.to_string()),
            )
            .arg(spend.map_or(1, |s| s.until.max(1)))
            .arg(flag(
                spend.is_some_and(|s| s.attempt == crate::Spend::REFUSED),
            ))
            .arg(family_key(tenant, ""))
            .arg(family_id)
            .arg(flag(self.new_families == FamilyLayout::Compact));
        let mut conn = self.conn.clone();
        let outcome: String = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok((outcome != "other").then(|| issued(&outcome)))
    }

    /// `SET key 1 NX EXAT until`: true for the one caller that set it.
    async fn set_once(&self, key: String, until: u64) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(1)
            .arg("NX")
            .arg("EXAT")
            .arg(until.max(1))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    async fn bump_version(&self, tenant: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: Version = self
            .bump
            .key(TENANTS_KEY)
            .arg(tenant)
            .arg(SEQUENCE_FIELD)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn put_tenant(&self, config: &TenantConfig) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: () = conn
            .set(config_key(&config.name), encode(config)?)
            .await
            .map_err(unavailable)?;
        self.bump_version(&config.name).await
    }

    async fn put_signing_keys(
        &self,
        tenant: &str,
        keys: &[SigningKeyRecord],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: () = conn
            .set(keys_key(tenant), encode(&keys)?)
            .await
            .map_err(unavailable)?;
        self.bump_version(tenant).await
    }

    async fn put_client(&self, tenant: &str, client: &ClientConfig) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: () = conn
            .hset(clients_key(tenant), &client.client_id, encode(client)?)
            .await
            .map_err(unavailable)?;
        self.bump_version(tenant).await
    }

    async fn delete_client(&self, tenant: &str, client_id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let removed: u32 = conn
            .hdel(clients_key(tenant), client_id)
            .await
            .map_err(unavailable)?;
        if removed > 0 {
            self.bump_version(tenant).await?;
        }
        Ok(())
    }

    async fn purge_tenant(&self, tenant: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{{t:{tenant}}}:*");
        let mut cursor = "0".to_string();
        let mut removed = 0u64;
        loop {
            let (next, n): (String, u64) = self
                .purge
                .key(config_key(tenant))
                .arg(&cursor)
                .arg(&pattern)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            removed += n;
            if next == "0" {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    async fn get_client(
        &self,
        tenant: &str,
        client_id: &str,
    ) -> Result<Option<ClientConfig>, StoreError> {
        let mut conn = self.conn.clone();
        let raw: Option<String> = conn
            .hget(clients_key(tenant), client_id)
            .await
            .map_err(unavailable)?;
        raw.map(|r| decode(&clients_key(tenant), &r)).transpose()
    }

    async fn delete_tenant(&self, tenant: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        // Same slot: one command, all or nothing.
        let _: () = conn
            .del(&[config_key(tenant), keys_key(tenant), clients_key(tenant)])
            .await
            .map_err(unavailable)?;
        let _: () = conn.hdel(TENANTS_KEY, tenant).await.map_err(unavailable)?;
        Ok(())
    }

    async fn tenant_versions(&self) -> Result<BTreeMap<String, Version>, StoreError> {
        let mut conn = self.conn.clone();
        let mut all: BTreeMap<String, Version> =
            conn.hgetall(TENANTS_KEY).await.map_err(unavailable)?;
        all.remove(SEQUENCE_FIELD);
        Ok(all)
    }

    async fn load_tenant(&self, tenant: &str) -> Result<Option<TenantBundle>, StoreError> {
        let mut conn = self.conn.clone();
        let (config, keys, clients): (Option<String>, Option<String>, BTreeMap<String, String>) =
            redis::pipe()
                .get(config_key(tenant))
                .get(keys_key(tenant))
                .hgetall(clients_key(tenant))
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        let Some(config) = config else {
            return Ok(None);
        };
        let config: TenantConfig = decode(&config_key(tenant), &config)?;
        let keys: Vec<SigningKeyRecord> = match keys {
            Some(raw) => decode(&keys_key(tenant), &raw)?,
            None => Vec::new(),
        };
        let clients = clients
            .values()
            .map(|raw| decode(&clients_key(tenant), raw))
            .collect::<Result<Vec<ClientConfig>, _>>()?;
        Ok(Some(TenantBundle {
            config,
            keys,
            clients,
        }))
    }

    async fn tenant_settings(&self, tenant: &str) -> Result<TenantSettings, StoreError> {
        let mut conn = self.conn.clone();
        let (config, keys): (Option<String>, Option<String>) = redis::cmd("MGET")
            .arg(config_key(tenant))
            .arg(keys_key(tenant))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(TenantSettings {
            config: config
                .map(|raw| decode(&config_key(tenant), &raw))
                .transpose()?,
            keys: match keys {
                Some(raw) => decode(&keys_key(tenant), &raw)?,
                None => Vec::new(),
            },
        })
    }

    async fn put_opaque_token(
        &self,
        tenant: &str,
        id: &str,
        claims: &AccessTokenClaims,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(opaque_key(tenant, id))
            .arg(encode(claims)?)
            .arg("EXAT")
            .arg(claims.exp)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_opaque_token(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<AccessTokenClaims>, StoreError> {
        let mut conn = self.conn.clone();
        let key = opaque_key(tenant, id);
        let raw: Option<String> = conn.get(&key).await.map_err(unavailable)?;
        raw.map(|r| decode(&key, &r)).transpose()
    }

    async fn delete_opaque_token(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let n: u32 = conn
            .del(opaque_key(tenant, id))
            .await
            .map_err(unavailable)?;
        Ok(n > 0)
    }

    async fn revoke_jti(&self, tenant: &str, jti: &str, until: u64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(revoked_key(tenant, jti))
            .arg(1)
            .arg("EXAT")
            .arg(until.max(1))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn is_revoked(&self, tenant: &str, jti: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        conn.exists(revoked_key(tenant, jti))
            .await
            .map_err(unavailable)
    }

    async fn is_token_revoked(
        &self,
        tenant: &str,
        jti: &str,
        family: Option<&str>,
    ) -> Result<bool, StoreError> {
        let Some(family) = family else {
            return self.is_revoked(tenant, jti).await;
        };
        let mut conn = self.conn.clone();
        self.token_revoked
            .key(revoked_key(tenant, jti))
            .key(family_key(tenant, family))
            .key(legacy_family_revoked_key(tenant, family))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn record_failure(
        &self,
        tenant: &str,
        key: &str,
        window_secs: u64,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        redis::Script::new(FAILURE_SCRIPT)
            .key(failures_key(tenant, key))
            .arg(window_secs.max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn failure_count(&self, tenant: &str, key: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let n: Option<u64> = conn
            .get(failures_key(tenant, key))
            .await
            .map_err(unavailable)?;
        Ok(n.unwrap_or(0))
    }

    async fn clear_failures(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: () = conn
            .del(failures_key(tenant, key))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn forgive_failure(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::Script::new(FORGIVE_SCRIPT)
            .key(failures_key(tenant, key))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn put_record(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
        json: &str,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(record_key(tenant, kind, id))
            .arg(json)
            .arg("EXAT")
            .arg(expires_at.max(1))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_record(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        conn.get(record_key(tenant, kind, id))
            .await
            .map_err(unavailable)
    }

    async fn mark_used(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
        until: u64,
    ) -> Result<bool, StoreError> {
        self.set_once(used_key(tenant, kind, id), until).await
    }

    async fn claim_once(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
        until: u64,
    ) -> Result<bool, StoreError> {
        self.set_once(used_key(tenant, kind, id), until).await
    }

    async fn delete_record(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: () = conn
            .del(&[record_key(tenant, kind, id), used_key(tenant, kind, id)])
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn issue(&self, tenant: &str, issue: &Issue<'_>) -> Result<Issued, StoreError> {
        let opaque = issue.opaque.map(|o| encode(o.1)).transpose()?;
        // While new families are written as sets (a rolling upgrade), most are sets: straight
        // to the script that reads them.
        // A family of the previous layout first where those are written; compact families
        // (started by servers writing them) are decided by their own script whatever this
        // server writes, so that switching layouts is a rolling restart like any other.
        if self.new_families == FamilyLayout::Hash
            && let Some(issued) = self
                .issue_in_family(tenant, issue, opaque.as_deref())
                .await?
        {
            return Ok(issued);
        }
        if self.new_families == FamilyLayout::Compact
            && let Some(issued) = self
                .issue_in_compact_family(tenant, issue, opaque.as_deref())
                .await?
        {
            return Ok(issued);
        }
        if let Some(issued) = self.issue_compact(tenant, issue, opaque.as_deref()).await? {
            return Ok(issued);
        }
        let spend = issue.spend;
        let family = issue.family;
        let spend_family = spend.and_then(|s| s.family);
        debug_assert!(
            spend_family.is_none() || family.is_none_or(|f| Some(f.family) == spend_family),
            "a spending's family is the one the issue joins"
        );
        let family_id = spend_family.or(family.map(|f| f.family)).unwrap_or("-");
        let mark = spend.map_or_else(String::new, |s| spending_mark(s.attempt, issue.successor));
        let (spent_kind, spent_id) =
            spend.map_or((RecordKind::RefreshToken, "-"), |s| (s.kind, s.id));
        let mut invocation = self.issue.prepare_invoke();
        invocation
            .key(used_key(tenant, spent_kind, spent_id))
            .key(legacy_family_revoked_key(tenant, family_id))
            .key(legacy_family_tokens_key(tenant, family_id))
            .key(opaque_key(tenant, issue.opaque.map_or("-", |o| o.0)))
            .key(unanswered_key(tenant, spent_kind, spent_id))
            .key(signed_out_key(
                tenant,
                issue.signed_in.map_or("-", |(u, _)| u),
            ))
            .key(family_key(tenant, family_id))
            .arg(flag(spend.is_some()))
            .arg(spend.map_or(1, |s| s.until.max(1)))
            .arg(family.map_or("", |f| match f.joining {
                Joining::Starts => "new",
                Joining::Started => "started",
                Joining::Existing => "existing",
            }))
            .arg(family.map_or("", |f| f.jti))
            .arg(family.map_or(1, |f| f.until.max(1)))
            .arg(flag(opaque.is_some()))
            .arg(opaque.unwrap_or_default())
            .arg(issue.opaque.map_or(1, |o| o.1.exp.max(1)))
            .arg(mark)
            .arg(used_key(tenant, RecordKind::RefreshToken, ""))
            .arg(
                issue
                    .signed_in
                    .map_or_else(String::new, |(_, at)| at.to_string()),
            )
            .arg(issue.retired_until().max(1))
            .arg(flag(spend_family.is_some()))
            .arg(spent_id)
            .arg(family.map_or(1, |f| f.exp.max(1)))
            .arg(flag(self.new_families != FamilyLayout::Sets))
            .arg(family_key(tenant, ""))
            .arg(family_id)
            .arg(flag(
                spend.is_some_and(|s| s.attempt == crate::Spend::REFUSED),
            ));
        let mut conn = self.conn.clone();
        let outcome: String = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(issued(&outcome))
    }

    async fn start_family(&self, tenant: &str, family: &str, until: u64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let (script, key, known) = match self.new_families {
            FamilyLayout::Compact => (&self.start_family, family_key(tenant, family), "b"),
            FamilyLayout::Hash => (&self.start_family, family_key(tenant, family), "k"),
            FamilyLayout::Sets => (
                &self.start_family_set,
                legacy_family_tokens_key(tenant, family),
                "",
            ),
        };
        let _: i64 = script
            .key(key)
            .arg(until.max(1))
            .arg(known)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn revoke_family(
        &self,
        tenant: &str,
        family: &str,
        until: u64,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn.clone();
        self.revoke
            .key(family_key(tenant, family))
            .key(legacy_family_revoked_key(tenant, family))
            .key(legacy_family_tokens_key(tenant, family))
            .arg(until.max(1))
            .arg(revoked_key(tenant, ""))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn sign_out_user(
        &self,
        tenant: &str,
        user: &str,
        at: u64,
        until: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::Script::new(SIGN_OUT_SCRIPT)
            .key(signed_out_key(tenant, user))
            .arg(at)
            .arg(until.max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn signed_out_at(&self, tenant: &str, user: &str) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn.clone();
        let at: Option<u64> = conn
            .get(signed_out_key(tenant, user))
            .await
            .map_err(unavailable)?;
        Ok(at)
    }

    async fn is_family_live(&self, tenant: &str, family: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        self.family_live
            .key(family_key(tenant, family))
            .key(legacy_family_revoked_key(tenant, family))
            .key(legacy_family_tokens_key(tenant, family))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn spent_by(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
        family: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        // Kept with its family, or (no family, or one from before families were hashes) apart.
        let (kept, apart): (Vec<Option<String>>, Option<String>) = redis::pipe()
            .cmd("HMGET")
            .arg(family_key(tenant, family.unwrap_or("-")))
            .arg(&["b", "c", "p", "m"])
            .arg(format!("u:{id}"))
            .get(used_key(tenant, kind, id))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let field = |i: usize| kept.get(i).cloned().flatten();
        let mark = if family.is_some() && field(0).is_some() {
            // A compact family keeps only the last spending's mark; anything else of it that
            // is not current was spent before (see ISSUE_COMPACT_SCRIPT).
            let (current, last) = (field(1), field(2));
            if last.as_deref() == Some(id) {
                Some(field(3).unwrap_or_default())
            } else if match kind {
                RecordKind::AuthorizationCode => current.is_some() || last.is_some(),
                _ => current.as_deref() != Some(id),
            } {
                Some("superseded".to_string())
            } else {
                None
            }
        } else {
            family.and(field(4)).or(apart)
        };
        Ok(mark.map(|m| m.split(' ').next().unwrap_or_default().to_string()))
    }

    async fn mark_unanswered(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
        until: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(unanswered_key(tenant, kind, id))
            .arg(1)
            .arg("EXAT")
            .arg(until.max(1))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// `INFO memory` rather than `CONFIG GET`, which managed Redis services often disable; on
    /// a cluster, every primary answers.
    async fn check_settings(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let info: Value = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut answers = Vec::new();
        info_texts(&info, None, &mut answers);
        if answers.is_empty() {
            return Err(StoreError::Unavailable(
                "INFO memory gave no answer".to_string(),
            ));
        }
        for (node, text) in answers {
            if let Some(problem) = eviction_problem(text) {
                let at = node.map(|n| format!(" on {n}")).unwrap_or_default();
                return Err(StoreError::Unsafe(format!("{problem}{at}")));
            }
        }
        Ok(())
    }
}

/// The `INFO` texts in a reply: one from a single server, one per primary (with its address)
/// from a cluster.
fn info_texts<'a>(
    value: &'a Value,
    node: Option<String>,
    out: &mut Vec<(Option<String>, &'a str)>,
) {
    match value {
        Value::BulkString(bytes) => {
            if let Ok(text) = std::str::from_utf8(bytes) {
                out.push((node, text));
            }
        }
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => out.push((node, text)),
        Value::Map(pairs) => {
            for (key, value) in pairs {
                let name = match key {
                    Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
                    Value::SimpleString(s) => Some(s.clone()),
                    _ => None,
                };
                info_texts(value, name, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                info_texts(item, node.clone(), out);
            }
        }
        _ => {}
    }
}

/// What is wrong with a server's eviction settings, from its `INFO memory`: any policy but
/// `noeviction` under a memory limit. `volatile-*` policies are refused too, because they
/// evict exactly the keys with a TTL, and every replay marker has one.
fn eviction_problem(info: &str) -> Option<String> {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let limit = field("maxmemory")
        .and_then(|m| m.parse::<u64>().ok())
        .unwrap_or(0);
    let policy = field("maxmemory_policy").unwrap_or("noeviction");
    (limit > 0 && policy != "noeviction").then(|| {
        format!(
            "Redis evicts keys when full (maxmemory {limit} bytes, maxmemory-policy {policy}): \
             a spent code or refresh token could be evicted and then used again; set \
             maxmemory-policy noeviction (full memory then fails writes with 503s, never replays)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_noeviction_or_no_memory_limit_keeps_replay_markers() {
        let info = |limit: u64, policy: &str| {
            format!(
                "# Memory\r\nused_memory:1000\r\nmaxmemory:{limit}\r\nmaxmemory_human:x\r\nmaxmemory_policy:{policy}\r\n"
            )
        };
        assert_eq!(
            eviction_problem(&info(0, "allkeys-lru")),
            None,
            "no limit, no eviction"
        );
        assert_eq!(eviction_problem(&info(1 << 30, "noeviction")), None);
        for policy in [
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
        ] {
            let problem = eviction_problem(&info(1 << 30, policy)).unwrap();
            assert!(problem.contains(policy), "{problem}");
            assert!(problem.contains("noeviction"), "{problem}");
        }
    }

    #[test]
    fn every_primary_of_a_cluster_is_read() {
        let reply = Value::Map(vec![
            (
                Value::SimpleString("10.0.0.1:6379".into()),
                Value::BulkString(b"maxmemory:0\r\nmaxmemory_policy:noeviction\r\n".to_vec()),
            ),
            (
                Value::SimpleString("10.0.0.2:6379".into()),
                Value::VerbatimString {
                    format: redis::VerbatimFormat::Text,
                    text: "maxmemory:100\r\nmaxmemory_policy:allkeys-lru\r\n".into(),
                },
            ),
        ]);
        let mut texts = Vec::new();
        info_texts(&reply, None, &mut texts);
        assert_eq!(texts.len(), 2);
        assert_eq!(texts[1].0.as_deref(), Some("10.0.0.2:6379"));
        assert!(eviction_problem(texts[1].1).is_some());
    }

    #[test]
    fn every_key_of_a_tenant_shares_its_hash_tag() {
        for key in [
            config_key("acme"),
            keys_key("acme"),
            clients_key("acme"),
            opaque_key("acme", "x"),
            revoked_key("acme", "y"),
        ] {
            // Redis Cluster hashes only what stands between the first '{' and the next '}'.
            let open = key.find('{').unwrap();
            let close = open + key[open..].find('}').unwrap();
            assert_eq!(&key[open + 1..close], "t:acme", "{key}");
        }
    }
}
