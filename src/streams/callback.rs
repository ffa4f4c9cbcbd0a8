//! Where a stream may deliver: [`CallbackUrl`] (checked before anything is sent), the
//! [`CallbackPolicy`] behind it (`KANDJI_CONNECTOR_CALLBACK_ALLOW`), and the DNS resolver that
//! applies the same policy to every address the callback client actually connects to, so a
//! name that re-resolves somewhere else later (DNS rebinding) is refused at connect time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use url::{Host, Url};

/// Which non-public targets an operator allowed, and for which plain `http` is accepted.
#[derive(Clone, Debug, Default)]
pub struct CallbackPolicy {
    nets: Vec<IpNet>,
    hosts: Vec<String>,
}

impl CallbackPolicy {
    /// Parses a comma-separated list of CIDRs (`127.0.0.1/32`), addresses (`::1`) and host
    /// names (`receiver.internal`). An empty string allows nothing beyond public `https`.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut policy = CallbackPolicy::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Ok(net) = entry.parse::<IpNet>() {
                policy.nets.push(net.trunc());
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                policy.nets.push(IpNet::from(ip));
            } else if is_host_name(&normalise_host(entry)) {
                policy.hosts.push(normalise_host(entry));
            } else {
                return Err(format!(
                    "{entry:?} is neither a CIDR, an IP address nor a host name"
                ));
            }
        }
        Ok(policy)
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty() && self.hosts.is_empty()
    }

    /// Whether `host` (a name) was listed by the operator.
    pub fn host_listed(&self, host: &str) -> bool {
        let host = normalise_host(host);
        self.hosts.contains(&host)
    }

    /// Whether `ip` is inside an allowed network.
    pub fn net_listed(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Why the callback may not connect to `ip`, or `None` when it may.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        if self.net_listed(ip) {
            return None;
        }
        non_public(ip)
    }
}

fn normalise_host(h: &str) -> String {
    h.trim_end_matches('.').to_ascii_lowercase()
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Why `ip` is not a public unicast address (loopback, private, link-local, …), or `None`.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "an unspecified (\"this network\") address"),
        ([10, 0, 0, 0], 8, "a private address"),
        ([100, 64, 0, 0], 10, "a shared (carrier-grade NAT) address"),
        ([127, 0, 0, 0], 8, "a loopback address"),
        ([169, 254, 0, 0], 16, "a link-local address"),
        ([172, 16, 0, 0], 12, "a private address"),
        ([192, 0, 0, 0], 24, "an IETF protocol assignment address"),
        ([192, 0, 2, 0], 24, "a documentation address"),
        ([192, 31, 196, 0], 24, "an AS112 address"),
        ([192, 52, 193, 0], 24, "an AMT address"),
        ([192, 88, 99, 0], 24, "a 6to4 relay address"),
        ([192, 168, 0, 0], 16, "a private address"),
        ([192, 175, 48, 0], 24, "an AS112 address"),
        ([198, 18, 0, 0], 15, "a benchmarking address"),
        ([198, 51, 100, 0], 24, "a documentation address"),
        ([203, 0, 113, 0], 24, "a documentation address"),
        ([224, 0, 0, 0], 4, "a multicast address"),
        ([240, 0, 0, 0], 4, "a reserved address"),
    ];
    RANGES
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, why)| *why)
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    const RANGES: &[([u16; 8], u32, &str)] = &[
        (
            [0, 0, 0, 0, 0, 0xffff, 0, 0],
            96,
            "an IPv4-mapped IPv6 address",
        ),
        (
            [0, 0, 0, 0, 0xffff, 0, 0, 0],
            96,
            "an IPv4-translated IPv6 address",
        ),
        (
            [0, 0, 0, 0, 0, 0, 0, 0],
            96,
            "an IPv4-compatible IPv6 address",
        ),
        ([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, "a NAT64 address"),
        (
            [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
            48,
            "a local-use NAT64 address",
        ),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "a discard-only address"),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "a Teredo address"),
        (
            [0x2001, 0x2, 0, 0, 0, 0, 0, 0],
            48,
            "a benchmarking address",
        ),
        (
            [0x2001, 0, 0, 0, 0, 0, 0, 0],
            23,
            "an IETF protocol assignment address",
        ),
        (
            [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
            32,
            "a documentation address",
        ),
        ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "a 6to4 address"),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "a documentation address"),
        (
            [0x5f00, 0, 0, 0, 0, 0, 0, 0],
            16,
            "a segment-routing address",
        ),
        (
            [0xfc00, 0, 0, 0, 0, 0, 0, 0],
            7,
            "a unique local (private) address",
        ),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "a link-local address"),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "a site-local address"),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "a multicast address"),
    ];
    if let Some((_, _, why)) = RANGES
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
    {
        return Some(why);
    }
    // Only global unicast (2000::/3) is public.
    if !in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        return Some("a reserved address");
    }
    None
}

/// A callback URL that passed the policy: `https` (or `http` to an allowed host), no
/// credentials, and a host that is, or resolves only to, addresses the policy accepts.
#[derive(Clone)]
pub struct CallbackUrl(Url);

impl std::fmt::Debug for CallbackUrl {
    // The path and query may carry a helper flow's token: show the origin only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallbackUrl({})", self.origin())
    }
}

/// How long resolving a callback host may take when the URL is checked.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

impl CallbackUrl {
    /// Checks `raw` against `policy`, resolving a host name (every address it resolves to must
    /// be acceptable). The error says what is wrong without repeating the URL.
    pub async fn check(raw: &str, policy: &CallbackPolicy) -> Result<Self, String> {
        let url = Self::check_static(raw, policy)?;
        if let Some(Host::Domain(name)) = url.0.host() {
            if policy.host_listed(name) {
                return Ok(url);
            }
            let port = url.0.port_or_known_default().unwrap_or(443);
            let lookup =
                tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port)));
            let addrs: Vec<SocketAddr> = match lookup.await {
                Ok(Ok(a)) => a.collect(),
                Ok(Err(_)) | Err(_) => return Err(format!("the host {name:?} cannot be resolved")),
            };
            if addrs.is_empty() {
                return Err(format!("the host {name:?} cannot be resolved"));
            }
            for a in addrs {
                if let Some(why) = policy.refusal(a.ip()) {
                    return Err(format!("the host {name:?} resolves to {}, {why}", a.ip()));
                }
            }
        }
        Ok(url)
    }

    /// The checks that need no DNS: scheme, credentials, and IP-literal hosts in any notation
    /// (the URL parser normalises decimal, octal and hex IPv4 forms to the address).
    pub fn check_static(raw: &str, policy: &CallbackPolicy) -> Result<Self, String> {
        let mut url =
            Url::parse(raw.trim()).map_err(|e| format!("is not a valid absolute URL ({e})"))?;
        let scheme = url.scheme().to_string();
        if scheme != "https" && scheme != "http" {
            return Err("must be an https URL".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry credentials (user:password@); use the helper flow's secret to authenticate callbacks".into());
        }
        url.set_fragment(None);
        let listed = match url.host() {
            None => return Err("has no host".into()),
            Some(Host::Domain(name)) => {
                if !is_host_name(name.trim_end_matches('.')) {
                    return Err("has an invalid host name".into());
                }
                policy.host_listed(name)
            }
            Some(Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), policy)?,
            Some(Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), policy)?,
        };
        if scheme == "http" && !listed {
            return Err("must use https (plain http is accepted only for hosts and networks listed in KANDJI_CONNECTOR_CALLBACK_ALLOW)".into());
        }
        Ok(CallbackUrl(url))
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }

    /// `scheme://host[:port]`, safe to show and store in the clear.
    pub fn origin(&self) -> String {
        self.0.origin().ascii_serialization()
    }

    /// For tests of the connect-time check: a URL that skipped [`CallbackUrl::check`].
    #[doc(hidden)]
    pub fn unchecked(url: Url) -> Self {
        CallbackUrl(url)
    }
}

/// An IP-literal host: refused unless public or listed; `Ok(listed)`.
fn check_ip(ip: IpAddr, policy: &CallbackPolicy) -> Result<bool, String> {
    if let Some(why) = policy.refusal(ip) {
        return Err(format!("points to {ip}, {why}"));
    }
    Ok(policy.net_listed(ip))
}

/// The error the resolver gives for a host with no acceptable address.
#[derive(Debug, thiserror::Error)]
#[error("the callback host {host:?} resolves only to refused addresses ({why})")]
pub struct RefusedAddress {
    pub host: String,
    pub why: String,
}

/// Resolves callback hosts and keeps only the addresses the policy accepts, so the client
/// never connects anywhere else, whatever DNS answers at delivery time.
pub struct GuardedResolver {
    policy: Arc<CallbackPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<CallbackPolicy>) -> Self {
        Self { policy }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let listed = policy.host_listed(&host);
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut why = "no address";
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.refusal(a.ip()) {
                    _ if listed => true,
                    None => true,
                    Some(w) => {
                        why = w;
                        false
                    }
                })
                .collect();
            if kept.is_empty() {
                return Err(Box::new(RefusedAddress {
                    host,
                    why: why.to_string(),
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(s: &str) -> CallbackPolicy {
        CallbackPolicy::parse(s).unwrap()
    }

    #[test]
    fn public_and_non_public_addresses() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
        ] {
            assert_eq!(non_public(ip.parse().unwrap()), None, "{ip}");
        }
        for ip in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.31.0.1",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2001:db8::1",
            "2001::1",
            "2002:7f00:1::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "3fff::1",
        ] {
            assert!(
                non_public(ip.parse().unwrap()).is_some(),
                "{ip} should be refused"
            );
        }
    }

    #[test]
    fn policy_entries() {
        let p = allow(" 127.0.0.1/32, 10.0.0.0/8 ,receiver.internal., ::1");
        assert_eq!(p.refusal("127.0.0.1".parse().unwrap()), None);
        assert!(p.refusal("127.0.0.2".parse().unwrap()).is_some());
        assert_eq!(p.refusal("10.9.9.9".parse().unwrap()), None);
        assert_eq!(p.refusal("::1".parse().unwrap()), None);
        assert!(p.refusal("::ffff:127.0.0.1".parse().unwrap()).is_some());
        assert!(p.host_listed("Receiver.Internal"));
        assert!(!p.host_listed("internal"));
        assert!(CallbackPolicy::parse("http://x/").is_err());
        assert!(allow("").is_empty());
    }

    #[test]
    fn static_checks() {
        let none = allow("");
        let lo = allow("127.0.0.1/32");
        assert!(CallbackUrl::check_static("https://8.8.8.8/hook", &none).is_ok());
        // https only, unless listed
        assert!(
            CallbackUrl::check_static("http://8.8.8.8/hook", &none)
                .unwrap_err()
                .contains("https")
        );
        assert!(CallbackUrl::check_static("http://127.0.0.1:9/hook", &lo).is_ok());
        assert!(CallbackUrl::check_static("ftp://8.8.8.8/", &none).is_err());
        assert!(
            CallbackUrl::check_static("https://u:p@8.8.8.8/", &none)
                .unwrap_err()
                .contains("credentials")
        );
        assert!(CallbackUrl::check_static("/relative", &none).is_err());
        // every notation of a refused address is refused; the listed one only in its exact form
        for raw in [
            "https://127.0.0.1/",
            "https://2130706433/",
            "https://0x7f000001/",
            "https://0177.0.0.1/",
            "https://0x7f.1/",
            "https://127.1/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:7f00:1]/",
            "https://0/",
            "https://[fe80::1]/",
            "https://169.254.169.254/",
            "https://2852039166/",
            "https://0xa9fea9fe/",
            "https://0251.0376.0251.0376/",
            "https://10.0.0.1/",
            "https://100.64.1.1/",
            "https://192.0.2.10/",
            "https://224.0.0.1/",
        ] {
            let e = CallbackUrl::check_static(raw, &none).unwrap_err();
            assert!(e.starts_with("points to "), "{raw}: {e}");
        }
        assert!(CallbackUrl::check_static("http://2130706433:8080/", &lo).is_ok());
        assert!(
            CallbackUrl::check_static("http://0x7f000002/", &lo)
                .unwrap_err()
                .contains("127.0.0.2")
        );
        assert!(
            CallbackUrl::check_static("http://[::ffff:127.0.0.1]/", &lo)
                .unwrap_err()
                .contains("IPv4-mapped")
        );
    }

    #[test]
    fn origin_hides_path_and_query() {
        let u =
            CallbackUrl::check_static("https://8.8.8.8:8443/flows/abc?token=s3cret#x", &allow(""))
                .unwrap();
        assert_eq!(u.origin(), "https://8.8.8.8:8443");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(u.as_url().fragment(), None);
    }

    #[tokio::test]
    async fn names_that_resolve_to_refused_addresses() {
        let e = CallbackUrl::check("https://localhost/hook", &allow(""))
            .await
            .unwrap_err();
        assert!(e.contains("resolves to") && e.contains("loopback"), "{e}");
        // listed by name: accepted without looking at its addresses, http too
        assert!(
            CallbackUrl::check("http://localhost:1/hook", &allow("localhost"))
                .await
                .is_ok()
        );
        assert!(
            CallbackUrl::check("https://no-such-host.invalid/", &allow(""))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn resolver_drops_refused_addresses() {
        use reqwest::dns::Resolve;
        let r = GuardedResolver::new(Arc::new(allow("")));
        let err = r
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("refused");
        assert!(err.downcast_ref::<RefusedAddress>().is_some(), "{err}");
        let r = GuardedResolver::new(Arc::new(allow("127.0.0.1/32")));
        let addrs: Vec<SocketAddr> = r
            .resolve("localhost".parse().unwrap())
            .await
            .expect("resolved")
            .collect();
        assert!(!addrs.is_empty());
        assert!(
            addrs.iter().all(|a| a.ip() == IpAddr::from([127, 0, 0, 1])),
            "{addrs:?}"
        );
    }
}
