//! Redis memory per live object: `used_memory` (from `INFO memory`) before and after creating
//! many objects of one kind through the real endpoints, divided by their number. Key, value,
//! expiry entry and allocator rounding are all counted, as a production Redis pays them.

use crate::load;
use crate::scenarios::{self, Target};
use std::net::SocketAddr;
use std::time::Duration;

/// One kind of object and what each costs.
pub struct PerObject {
    pub what: &'static str,
    pub count: usize,
    pub bytes: f64,
}

/// A sample of the keys matching `pattern` (up to 2,000, from at most 100,000 examined, so
/// Redis answers within its client's timeout) and the sum of their `MEMORY USAGE`.
const KEY_USAGE: &str = r"
local cursor, n, total, calls = '0', 0, 0, 0
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = r[1]
  calls = calls + 1
  for _, k in ipairs(r[2]) do
    if n < 2000 then
      n = n + 1
      total = total + redis.call('MEMORY', 'USAGE', k)
    end
  end
until cursor == '0' or n >= 2000 or calls >= 100
return n .. ' ' .. total";

/// One kind of key and what each costs on average (`MEMORY USAGE`: key, value and their
/// allocations, without the keyspace's own dictionary entries).
pub struct PerKey {
    pub pattern: String,
    pub count: u64,
    pub bytes: f64,
}

/// Every kind of key a tenant's live objects use.
pub fn per_key(port: u16, tenant: &str) -> anyhow::Result<Vec<PerKey>> {
    let mut out = Vec::new();
    for kind in [
        "at",
        "rv",
        "rt",
        "rt.used",
        "fam",
        "rfa",
        "rfr",
        "code",
        "code.used",
        "ar",
        "sess",
        "consent",
    ] {
        let pattern = format!("{{t:{tenant}}}:{kind}:*");
        let reply = gatehouse_testkit::redis_command(port, &["EVAL", KEY_USAGE, "0", &pattern])?;
        let (count, total) = reply
            .split_once(' ')
            .and_then(|(c, t)| Some((c.parse::<u64>().ok()?, t.parse::<u64>().ok()?)))
            .ok_or_else(|| anyhow::anyhow!("key usage of {pattern}: {reply}"))?;
        if count > 0 {
            out.push(PerKey {
                pattern,
                count,
                bytes: total as f64 / count as f64,
            });
        }
    }
    Ok(out)
}

fn used_memory(port: u16) -> anyhow::Result<u64> {
    let info = gatehouse_testkit::redis_command(port, &["INFO", "memory"])?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no used_memory in INFO memory"))
}

/// Runs `create`, which makes objects and says how many, and measures what they added.
async fn measure<F: std::future::Future<Output = anyhow::Result<usize>>>(
    port: u16,
    what: &'static str,
    create: F,
) -> anyhow::Result<PerObject> {
    // The step before grew the keyspace; Redis frees the old table of a dictionary it grows
    // only once it has moved every entry, a little per command and per millisecond of its
    // cron. Read before that, the freeing would fall into this step and hide its objects.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = used_memory(port)?;
    let count = create.await?;
    let after = used_memory(port)?;
    Ok(PerObject {
        what,
        count,
        bytes: after.saturating_sub(before) as f64 / count.max(1) as f64,
    })
}

/// What each rotation leaves in Redis until its family expires (nothing in a compact family,
/// which rewrites the same fields; in the earlier layouts the spent token's mark and the new
/// access token's place in the family): `grants` chains rotated for two seconds, on a tenant
/// whose keys [`per_key`] does not sample, so that its figures stay those of fresh grants.
async fn rotations(addr: SocketAddr, port: u16, grants: usize) -> anyhow::Result<PerObject> {
    let chains = scenarios::refresh_chains(addr, "rotate", grants).await?;
    measure(
        port,
        "refresh rotation (what it leaves in its family)",
        async {
            let rotated = load::drive(addr, chains, Duration::from_secs(2)).await;
            anyhow::ensure!(
                rotated.errors == 0,
                "rotations: {} errors, the first: {:?}",
                rotated.errors,
                rotated.first_error
            );
            Ok(usize::try_from(rotated.ok)?)
        },
    )
    .await
}

/// Bytes per opaque access token, refresh token (with its grant family), authorization code
/// and browser session, each on its own tenant's real flow.
pub async fn per_object(addr: SocketAddr, redis_port: u16) -> anyhow::Result<Vec<PerObject>> {
    const TOKENS: usize = 20_000;
    const GRANTS: usize = 300;
    const CODES: usize = 5_000;
    // Under the 300 sign-ins one address may start per tenant and window (the scenarios sign
    // in a few times too).
    const SESSIONS: usize = 250;
    let mut out = Vec::new();
    out.push(
        measure(redis_port, "opaque access token", async {
            scenarios::token_pool(addr, &Target::tenant("opaque"), TOKENS).await?;
            Ok(TOKENS)
        })
        .await?,
    );
    out.push(
        measure(
            redis_port,
            "refresh token (a grant: token, family, JWT access token)",
            async {
                scenarios::refresh_chains(addr, "es256", GRANTS).await?;
                Ok(GRANTS)
            },
        )
        .await?,
    );
    out.push(rotations(addr, redis_port, GRANTS).await?);
    let mut cookie = String::new();
    out.push(
        measure(
            redis_port,
            "browser sign-in (session, its request and the code it returned)",
            async {
                for _ in 0..SESSIONS {
                    cookie = scenarios::sign_in(addr, "es256").await?;
                }
                Ok(SESSIONS)
            },
        )
        .await?,
    );
    out.push(
        measure(redis_port, "authorization code", async {
            scenarios::mint_codes(addr, "es256", &cookie, CODES, 16).await?;
            Ok(CODES)
        })
        .await?,
    );
    Ok(out)
}
