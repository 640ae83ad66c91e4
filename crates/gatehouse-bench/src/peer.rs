//! The peer: node-oidc-provider (npm `oidc-provider`, 9.x), installed from the npm registry
//! into a temporary directory (nothing is committed), configured like the benchmark's
//! tenants (an ES256 JWT or opaque access token per client_credentials request, HTTP Basic,
//! introspection) and run under the same load, on the same core Gatehouse had.

use crate::setup::{Pinning, SECRET, http_status};
use anyhow::{Context, bail};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PROVIDER: &str = r"
import Provider from 'oidc-provider';
import { generateKeyPair, exportJWK } from 'jose';
const [port, format, secret] = process.argv.slice(2);
const { privateKey } = await generateKeyPair('ES256', { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), alg: 'ES256', use: 'sig', kid: 'bench' };
const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: 'bench', client_secret: secret, grant_types: ['client_credentials'],
    redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
  }],
  jwks: { keys: [jwk] },
  scopes: ['bench.read'],
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:bench',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'bench.read', audience: 'urn:bench', accessTokenTTL: 3600,
        accessTokenFormat: format, jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});
provider.listen(Number(port), '127.0.0.1');
";

/// Why there is no peer, if there is none.
pub fn available() -> Result<(), String> {
    for tool in ["node", "npm"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Err(format!("{tool} not found: no peer run"));
        }
    }
    Ok(())
}

pub struct Peer {
    child: Child,
    pub pid: u32,
    pub addr: std::net::SocketAddr,
    pub version: String,
    _dir: tempfile::TempDir,
}

impl Peer {
    /// Installs oidc-provider 9 and starts it with `format` ("jwt" or "opaque").
    pub fn start(
        pinning: &Pinning,
        format: &str,
        installed: &tempfile::TempDir,
    ) -> anyhow::Result<Peer> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("provider.mjs"), PROVIDER)?;
        // Resolve the packages from the shared install.
        std::os::unix::fs::symlink(
            installed.path().join("node_modules"),
            dir.path().join("node_modules"),
        )?;
        let port = gatehouse_testkit::free_port();
        let child = Pinning::command(pinning.server, std::path::Path::new("node"))
            .arg(dir.path().join("provider.mjs"))
            .args([&port.to_string(), format, SECRET])
            .env("NODE_ENV", "production")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting node")?;
        let pid = child.id();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_status(&addr.to_string(), "/.well-known/openid-configuration") != Some(200) {
            if Instant::now() > deadline {
                bail!("oidc-provider did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let version = std::fs::read_to_string(
            installed
                .path()
                .join("node_modules/oidc-provider/package.json"),
        )
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(String::from))
        .unwrap_or_default();
        Ok(Peer {
            child,
            pid,
            addr,
            version,
            _dir: dir,
        })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `npm install oidc-provider@9` into a fresh temporary directory.
pub fn install() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("package.json"),
        r#"{"name":"peer","private":true,"type":"module"}"#,
    )?;
    let status = Command::new("npm")
        .args([
            "install",
            "--silent",
            "--no-audit",
            "--no-fund",
            "oidc-provider@9",
        ])
        .current_dir(dir.path())
        .status()
        .context("running npm")?;
    if !status.success() {
        bail!("npm install oidc-provider@9 failed");
    }
    Ok(dir)
}
