//! The `[push]` table: where `cecsync run` receives the platforms' pushes (cec-api.md
//! section 3), how each is authenticated, and where they are spooled before compaction.
//!
//! ```toml
//! [push]
//! listen = "0.0.0.0:9443"
//! tls_cert = "/etc/cecsync/tls/push.crt"   # with tls_key: HTTPS; neither: plain HTTP
//! tls_key = "/etc/cecsync/tls/push.key"
//! spool_dir = "/var/lib/cecsync/push-spool"
//!
//! [push.privatenumber]
//! apps = { "APPKEY" = "${CEC_PRIVATENUMBER_APP_SECRET}" }
//!
//! [push.outbound_results]
//! path_secret = "${CEC_OUTBOUND_CALLBACK_SECRET}"
//! allow_ips = ["10.0.0.0/8"]
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::FixedOffset;
use serde::Deserialize;

use super::{ConfigError, Source, Validator};
use crate::calendar::parse_zone;
use crate::push::access::IpAllowList;
use crate::secret::Secret;

/// The dataset of the pushed outbound results, which a pull pipeline also fills.
pub(super) const OUTBOUND_DATASET: &str = "outbound_results";
/// Default path of the Private Number CDR receiver.
pub const DEFAULT_CDR_PATH: &str = "/push/privatenumber/cdr";
/// Default path of the Private Number call-event receiver.
pub const DEFAULT_EVENT_PATH: &str = "/push/privatenumber/event";
/// Default path of the outbound-result callback (its secret segment follows it).
pub const DEFAULT_OUTBOUND_PATH: &str = "/push/isales/result";
/// Default largest body accepted: 50 CDRs of a few KiB each fit many times over.
const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default pause between compactions of the spool into the lake.
const DEFAULT_COMPACT_INTERVAL_SECS: u64 = 60;
/// Default tolerance between a push's `Created` and the receiver's clock.
const DEFAULT_MAX_CLOCK_SKEW_SECS: u64 = 300;
/// Zone of outbound-result times when neither the configuration nor a source says it
/// (China Standard Time, where CEC runs).
const DEFAULT_OUTBOUND_ZONE: &str = "+08:00";

/// The raw `[push]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PushConfig {
    listen: String,
    #[serde(default)]
    tls_cert: Option<PathBuf>,
    #[serde(default)]
    tls_key: Option<PathBuf>,
    #[serde(default)]
    spool_dir: Option<PathBuf>,
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default)]
    compact_interval_secs: Option<u64>,
    #[serde(default)]
    privatenumber: Option<PrivateNumberConfig>,
    #[serde(default)]
    outbound_results: Option<OutboundConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivateNumberConfig {
    #[serde(default)]
    cdr_path: Option<String>,
    #[serde(default)]
    event_path: Option<String>,
    #[serde(default)]
    apps: BTreeMap<String, String>,
    #[serde(default)]
    max_clock_skew_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboundConfig {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    path_secret: Option<String>,
    #[serde(default)]
    allow_ips: Vec<String>,
    #[serde(default)]
    timezone: Option<String>,
}

/// The receivers of `cecsync run` and their spool.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// Address of the push listener (its own, apart from the control API).
    pub listen: SocketAddr,
    /// Certificate chain and key (PEM) for HTTPS; `None`: plain HTTP behind a proxy.
    pub tls: Option<TlsFiles>,
    /// Local folder of the spool, which must survive restarts.
    pub spool_dir: PathBuf,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Pause between two compactions of the spool into the lake.
    pub compact_interval: Duration,
    /// The Private Number receivers, when configured.
    pub privatenumber: Option<PrivateNumberPush>,
    /// The outbound-result callback, when configured.
    pub outbound_results: Option<OutboundPush>,
}

/// PEM files of the push listener's HTTPS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// `[push.privatenumber]`: CDR and call-event receivers, verified with the apps' secrets.
#[derive(Debug, Clone)]
pub struct PrivateNumberPush {
    /// Path of the CDR receiver (eventType `fee`).
    pub cdr_path: String,
    /// Path of the call-event receiver.
    pub event_path: String,
    /// APP_Secret of each app key whose pushes are accepted.
    pub apps: BTreeMap<String, Secret>,
    /// How far a push's `Created` may be from the receiver's clock.
    pub max_clock_skew: Duration,
}

/// `[push.outbound_results]`: the CC-iSales result callback, which carries no signature.
#[derive(Debug, Clone)]
pub struct OutboundPush {
    /// Path of the callback, before the secret segment.
    pub path: String,
    /// A secret last path segment (the URL given to iSales is `path/secret`).
    pub path_secret: Option<Secret>,
    /// Peers allowed to push (empty: any).
    pub allow_ips: IpAllowList,
    /// Zone of the results' `callTimeStr` (the tenant's).
    pub zone: FixedOffset,
}

impl PushSettings {
    /// The zone of outbound-result times: the callback's, or the default when only Private
    /// Number pushes are received (results spooled under an earlier configuration).
    pub fn outbound_zone(&self) -> FixedOffset {
        self.outbound_results.as_ref().map_or_else(default_outbound_zone, |o| o.zone)
    }
}

fn default_outbound_zone() -> FixedOffset {
    parse_zone(DEFAULT_OUTBOUND_ZONE).expect("a valid zone")
}

impl OutboundPush {
    /// The path the callback is served on: `path`, then the secret segment if any.
    pub fn route(&self) -> String {
        match &self.path_secret {
            Some(secret) => format!("{}/{}", self.path.trim_end_matches('/'), secret.expose()),
            None => self.path.clone(),
        }
    }
}

impl Validator<'_> {
    /// Validates `[push]`. `outbound_source` is the source of the `outbound_results` pull
    /// (the backstop), whose zone the pushed results must share to land in the same months.
    pub(super) fn push(
        &self,
        raw: &PushConfig,
        base: &Path,
        outbound_source: Option<(&str, &Source)>,
    ) -> Result<PushSettings, ConfigError> {
        let listen = self.text("push.listen", &raw.listen)?;
        let listen = listen.parse::<SocketAddr>().map_err(|_| {
            self.invalid(
                "push.listen",
                &format!("'{listen}' is not an IP address and port"),
                "write 0.0.0.0:9443 (every interface) or 127.0.0.1:9443 (behind a local proxy)",
            )
        })?;
        let tls = match (&raw.tls_cert, &raw.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let (cert, key) = (base.join(cert), base.join(key));
                for (name, path) in [("push.tls_cert", &cert), ("push.tls_key", &key)] {
                    if !path.is_file() {
                        return Err(self.invalid(
                            name,
                            &format!("{} is not a readable file", path.display()),
                            "give the PEM file's path (relative paths are read from the configuration's folder)",
                        ));
                    }
                }
                Some(TlsFiles { cert, key })
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(self.invalid(
                    "push.tls_cert",
                    "and push.tls_key go together",
                    "set both (HTTPS) or neither (plain HTTP behind a proxy that terminates TLS)",
                ))
            }
        };
        let spool_dir = raw.spool_dir.as_ref().map(|d| base.join(d)).ok_or_else(|| {
            self.invalid(
                "push.spool_dir",
                "is not set: pushes are answered only once written to it",
                "set a local folder that survives restarts, e.g. /var/lib/cecsync/push-spool",
            )
        })?;
        let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes < 1024 {
            return Err(self.invalid(
                "push.max_body_bytes",
                &format!("{max_body_bytes} is too small for one push"),
                "use 1048576 (1 MiB) or more",
            ));
        }
        let interval = raw.compact_interval_secs.unwrap_or(DEFAULT_COMPACT_INTERVAL_SECS);
        if interval == 0 {
            return Err(self.invalid(
                "push.compact_interval_secs",
                "is 0",
                "use 1 or more seconds (60 by default)",
            ));
        }
        let privatenumber =
            raw.privatenumber.as_ref().map(|p| self.privatenumber(p)).transpose()?;
        let outbound_results =
            raw.outbound_results.as_ref().map(|o| self.outbound(o, outbound_source)).transpose()?;
        if privatenumber.is_none() && outbound_results.is_none() {
            return Err(self.invalid(
                "push",
                "configures no receiver",
                "add [push.privatenumber] and/or [push.outbound_results], or remove [push]",
            ));
        }
        let settings = PushSettings {
            listen,
            tls,
            spool_dir,
            max_body_bytes,
            compact_interval: Duration::from_secs(interval),
            privatenumber,
            outbound_results,
        };
        self.distinct_paths(&settings)?;
        Ok(settings)
    }

    fn push_path(
        &self,
        key: &str,
        raw: Option<&String>,
        default: &str,
    ) -> Result<String, ConfigError> {
        let path =
            raw.map(|p| self.text(key, p)).transpose()?.unwrap_or_else(|| default.to_string());
        let fits = |c: char| c.is_ascii_alphanumeric() || "/-_.~".contains(c);
        if !path.starts_with('/')
            || !path.chars().all(fits)
            || path.len() < 2
            || path.contains("//")
        {
            return Err(self.invalid(
                key,
                &format!("'{path}' is not a URL path of letters, digits and / - _ . ~"),
                &format!("write an absolute path such as {default}"),
            ));
        }
        Ok(path)
    }

    fn privatenumber(&self, p: &PrivateNumberConfig) -> Result<PrivateNumberPush, ConfigError> {
        let cdr_path =
            self.push_path("push.privatenumber.cdr_path", p.cdr_path.as_ref(), DEFAULT_CDR_PATH)?;
        let event_path = self.push_path(
            "push.privatenumber.event_path",
            p.event_path.as_ref(),
            DEFAULT_EVENT_PATH,
        )?;
        if p.apps.is_empty() {
            return Err(self.invalid(
                "push.privatenumber.apps",
                "names no app, so every push would be refused",
                "write apps = { \"APP_KEY\" = \"${CEC_PRIVATENUMBER_APP_SECRET}\" }",
            ));
        }
        let mut apps = BTreeMap::new();
        for (app_key, secret) in &p.apps {
            let key = format!("push.privatenumber.apps.{app_key}");
            let secret = self.text(&key, secret)?;
            if app_key.trim().is_empty() || secret.is_empty() {
                return Err(self.invalid(
                    &key,
                    "has an empty app key or secret",
                    "give the app key and its APP_Secret (as ${ENV_VAR})",
                ));
            }
            apps.insert(app_key.clone(), Secret::new(secret));
        }
        let skew = p.max_clock_skew_secs.unwrap_or(DEFAULT_MAX_CLOCK_SKEW_SECS);
        if skew == 0 {
            return Err(self.invalid(
                "push.privatenumber.max_clock_skew_secs",
                "is 0: no push would arrive in time",
                "use 300 (5 minutes) or so",
            ));
        }
        Ok(PrivateNumberPush {
            cdr_path,
            event_path,
            apps,
            max_clock_skew: Duration::from_secs(skew),
        })
    }

    fn outbound(
        &self,
        o: &OutboundConfig,
        backstop: Option<(&str, &Source)>,
    ) -> Result<OutboundPush, ConfigError> {
        let path =
            self.push_path("push.outbound_results.path", o.path.as_ref(), DEFAULT_OUTBOUND_PATH)?;
        let path_secret = self
            .secret("push.outbound_results.path_secret", &o.path_secret)?
            .filter(|s| !s.expose().is_empty());
        if let Some(secret) = &path_secret {
            let fits =
                secret.expose().bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b));
            if !fits || secret.expose().len() < 16 {
                return Err(self.invalid(
                    "push.outbound_results.path_secret",
                    "must be at least 16 characters of A-Z a-z 0-9 - _ . ~ (one URL path segment)",
                    "generate one, e.g. with `openssl rand -hex 24`",
                ));
            }
        }
        let allow_ips = IpAllowList::parse(&o.allow_ips).map_err(|bad| {
            self.invalid(
                "push.outbound_results.allow_ips",
                &bad.to_string(),
                "write addresses or CIDR ranges, e.g. [\"10.0.0.0/8\", \"192.168.1.20\"]",
            )
        })?;
        let zone = match (&o.timezone, backstop) {
            (Some(z), backstop) => {
                let zone = parse_zone(z).map_err(|e| {
                    self.invalid("push.outbound_results.timezone", &e.to_string(), "e.g. +08:00")
                })?;
                if let Some((name, _)) = backstop.filter(|(_, s)| s.zone != zone) {
                    return Err(self.invalid(
                        "push.outbound_results.timezone",
                        &format!(
                            "differs from the zone of source '{name}', which pulls outbound_results: a call would land in two months"
                        ),
                        &format!("remove it (the source's zone is used) or set sources.{name}.timezone to the same zone"),
                    ));
                }
                zone
            }
            (None, Some((_, source))) => source.zone,
            (None, None) => default_outbound_zone(),
        };
        Ok(OutboundPush { path, path_secret, allow_ips, zone })
    }

    /// Two receivers on one path would take each other's pushes.
    fn distinct_paths(&self, push: &PushSettings) -> Result<(), ConfigError> {
        let mut paths: Vec<(&str, String)> = Vec::new();
        if let Some(p) = &push.privatenumber {
            paths.push(("push.privatenumber.cdr_path", p.cdr_path.clone()));
            paths.push(("push.privatenumber.event_path", p.event_path.clone()));
        }
        if let Some(o) = &push.outbound_results {
            paths.push(("push.outbound_results.path", o.route()));
        }
        for (i, (key, path)) in paths.iter().enumerate() {
            if paths[..i].iter().any(|(_, earlier)| earlier == path) {
                return Err(self.invalid(
                    key,
                    "is the path of another receiver",
                    "give each receiver its own path",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Settings;

    fn env(name: &str) -> Option<String> {
        match name {
            "PN_SECRET" | "CEC_PRIVATENUMBER_APP_SECRET" => Some("pn-secret".into()),
            "CB_SECRET" | "CEC_OUTBOUND_CALLBACK_SECRET" => Some("0123456789abcdef0123".into()),
            _ => None,
        }
    }

    fn parse(push: &str) -> Result<Settings, ConfigError> {
        let text = format!("tenant_id = \"T\"\n[destination]\nurl = \"file://./lake\"\n{push}");
        Settings::parse(Path::new("/etc/cecsync/cecsync.toml"), &text, &env)
    }

    /// The commented `[push]` block of the example configuration, uncommented, is valid
    /// (its certificate files aside) and gives the documented defaults.
    #[test]
    fn the_example_push_block_is_valid() {
        let example = include_str!("../../cecsync.example.toml");
        let block: String = example
            .lines()
            .skip_while(|l| !l.starts_with("# [push]"))
            .filter_map(|l| l.strip_prefix("# "))
            // Keys and tables; the prose between them stays out.
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .filter(|l| !l.starts_with("tls_"))
            .map(|l| format!("{l}\n"))
            .collect();
        let settings = parse(&block).unwrap();
        let push = settings.push.unwrap();
        assert_eq!(push.listen.to_string(), "0.0.0.0:9443");
        assert_eq!(push.spool_dir, Path::new("/var/lib/cecsync/push-spool"));
        assert_eq!((push.max_body_bytes, push.compact_interval.as_secs()), (1_048_576, 60));
        let pn = push.privatenumber.unwrap();
        assert_eq!(
            (pn.cdr_path.as_str(), pn.event_path.as_str()),
            (DEFAULT_CDR_PATH, DEFAULT_EVENT_PATH)
        );
        assert_eq!(pn.apps["YOUR_APP_KEY"].expose(), "pn-secret");
        let outbound = push.outbound_results.unwrap();
        assert_eq!(outbound.route(), "/push/isales/result/0123456789abcdef0123");
        assert_eq!(outbound.zone.local_minus_utc(), 8 * 3600);
        assert!(!outbound.allow_ips.allows("192.168.1.1".parse().unwrap()));
        assert!(outbound.allow_ips.allows("10.1.2.3".parse().unwrap()));
        assert!(
            !format!("{outbound:?}").contains("0123456789abcdef0123"),
            "the path secret is redacted"
        );
    }

    /// Each mistake names the key and the fix, and never the secret.
    #[test]
    fn push_errors_name_the_key_and_the_fix() {
        let base = "[push]\nlisten = \"0.0.0.0:9443\"\nspool_dir = \"/s\"\n";
        let cases = [
            ("[push]\nlisten = \"0.0.0.0:9443\"\n[push.outbound_results]\n", "push.spool_dir"),
            ("[push]\nlisten = \"port 9443\"\nspool_dir = \"/s\"\n[push.outbound_results]\n", "push.listen"),
            (base, "configures no receiver"),
            (&format!("{base}[push.privatenumber]\n"), "push.privatenumber.apps"),
            (&format!("{base}tls_cert = \"/nope.pem\"\n[push.outbound_results]\n"), "push.tls_cert"),
            (&format!("{base}[push.outbound_results]\npath_secret = \"short\"\n"), "push.outbound_results.path_secret"),
            (&format!("{base}[push.outbound_results]\nallow_ips = [\"10.0.0.0/33\"]\n"), "push.outbound_results.allow_ips"),
            (&format!("{base}[push.outbound_results]\npath = \"nope\"\n"), "push.outbound_results.path"),
            (
                &format!("{base}[push.privatenumber]\napps = {{ k = \"${{PN_SECRET}}\" }}\ncdr_path = \"/p\"\nevent_path = \"/p\"\n"),
                "push.privatenumber.event_path",
            ),
        ];
        for (text, key) in cases {
            let message = parse(text).unwrap_err().to_string();
            assert!(message.contains(key) && message.contains("fix"), "{key}: {message}");
            assert!(!message.contains("pn-secret"), "{message}");
        }
    }

    /// The pushed outbound results share the zone of the pull that backs them up: a
    /// different explicit zone is refused, none takes the source's.
    #[test]
    fn outbound_zone_follows_the_backstop_pull() {
        let isales = "[sources.isales]\nbase_url = \"https://10.0.0.2:28443\"\ntimezone = \"+07:00\"\nak = \"a\"\nsk = \"${PN_SECRET}\"\n[pipelines.outbound_results]\nfor_each = [{ vdnId = 1, campaignId = 2 }]\n";
        let push =
            "[push]\nlisten = \"0.0.0.0:9443\"\nspool_dir = \"/s\"\n[push.outbound_results]\n";
        let settings = parse(&format!("{isales}{push}")).unwrap();
        assert_eq!(settings.push.unwrap().outbound_zone().local_minus_utc(), 7 * 3600);
        let message =
            parse(&format!("{isales}{push}timezone = \"+08:00\"\n")).unwrap_err().to_string();
        assert!(message.contains("push.outbound_results.timezone"), "{message}");
    }
}
