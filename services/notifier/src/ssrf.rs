//! Webhook URLs that cannot be turned against us (SSRF).
//!
//! A subscriber chooses the URL the notifier will call, so by default:
//! * only `https` (no user info, at most [`MAX_URL_LEN`] characters);
//! * the host is resolved and **every** address must be public: loopback,
//!   private (RFC 1918, IPv6 unique-local), link-local (which holds the
//!   cloud metadata services, `169.254.169.254` and `fd00:ec2::254`),
//!   shared (CGNAT, which holds Alibaba's `100.100.100.200`), unspecified,
//!   multicast, broadcast and reserved addresses are refused, as are
//!   IPv4-mapped and NAT64 forms of them;
//! * the request goes to the checked addresses only ([`pinned_client`]
//!   hands them to reqwest's resolver for that host), so a DNS answer that
//!   changes between the check and the connection (DNS rebinding) cannot
//!   redirect it;
//! * redirects are not followed, proxies from the environment are not
//!   used, and a delivery times out after 10 s.
//!
//! The check runs when a subscription is created and again before every
//! delivery. `[notifier] allow_private_webhooks = true` lifts the address
//! and scheme rules (tests, private networks), except for the cloud's
//! metadata service (169.254.0.0/16, `fd00:ec2::254`, in any form);
//! resolution and pinning stay.

use reqwest::Url;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Longest accepted webhook URL, characters.
pub const MAX_URL_LEN: usize = 2048;

/// Timeout of one delivery request.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a webhook URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("url is not a valid absolute URL: {0}")]
    Syntax(String),
    #[error("url must use https (got {0:?})")]
    Scheme(String),
    #[error("url must not contain a user name or password")]
    Credentials,
    #[error("url is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("url has no host")]
    NoHost,
    #[error("url host {host:?} does not resolve: {message}")]
    Resolve { host: String, message: String },
    #[error("url host {host:?} resolves to {addr}, which webhooks may not reach ({why} address)")]
    Forbidden {
        host: String,
        addr: IpAddr,
        why: &'static str,
    },
}

impl UrlError {
    /// True when the refusal may pass by itself (a resolver failure), so a
    /// delivery is tried again later; the others are final.
    pub fn is_transient(&self) -> bool {
        matches!(self, UrlError::Resolve { .. })
    }
}

/// A URL whose host resolved to addresses that passed the check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedUrl {
    pub url: Url,
    /// The host as written (a domain, or an address literal).
    pub host: String,
    /// The addresses to connect to, every one checked.
    pub addrs: Vec<SocketAddr>,
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local (cloud metadata)")
    } else if o[0] == 0 || ip.is_unspecified() {
        Some("unspecified")
    } else if o[0] == 100 && (64..128).contains(&o[1]) {
        Some("shared (CGNAT)")
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        Some("multicast, broadcast or reserved")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol")
    } else if o[0] == 198 && (o[1] == 18 || o[1] == 19) {
        Some("benchmarking")
    } else {
        None
    }
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_kind(v4);
    }
    let v4_of =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        // NAT64: the IPv4 address in the last 32 bits.
        return v4_kind(v4_of(s[6], s[7]));
    }
    if s[0..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        // IPv4-compatible (deprecated, `::169.254.169.254`): the last 32 bits.
        return v4_kind(v4_of(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        // 6to4: the IPv4 address in bits 16–47.
        return v4_kind(v4_of(s[1], s[2]));
    }
    if s[0] == 0x2001 && s[1] == 0 {
        return Some("Teredo tunnel");
    }
    if s[0] == 0x2001 && s[1] == 0x0db8 {
        return Some("documentation");
    }
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("unique-local (private, cloud metadata)")
    } else if (s[0] & 0xffc0) == 0xfe80 || (s[0] & 0xffc0) == 0xfec0 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

/// Whether `ip` is a cloud metadata service's (IPv4 link-local
/// 169.254.0.0/16 in any IPv6 form, or AWS's `fd00:ec2::254`).
fn is_metadata(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || v6_kind(v6) == Some("link-local (cloud metadata)")
        }
    }
}

/// Why `ip` may not be reached by a webhook, or `None` for a public address.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

/// Parses `url` and checks its form (scheme, user info, length, host).
pub fn parse(url: &str, allow_private: bool) -> Result<Url, UrlError> {
    if url.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong);
    }
    let u = Url::parse(url.trim()).map_err(|e| UrlError::Syntax(e.to_string()))?;
    match u.scheme() {
        "https" => {}
        "http" if allow_private => {}
        other => return Err(UrlError::Scheme(other.to_string())),
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(UrlError::Credentials);
    }
    if u.host().is_none() {
        return Err(UrlError::NoHost);
    }
    Ok(u)
}

/// Checks `url` (see the module docs): its form, then every address its
/// host resolves to.
pub async fn check(url: &str, allow_private: bool) -> Result<CheckedUrl, UrlError> {
    let u = parse(url, allow_private)?;
    let port = u.port_or_known_default().unwrap_or(443);
    let (host, addrs): (String, Vec<SocketAddr>) = match u.host() {
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
        Some(url::Host::Ipv6(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
        Some(url::Host::Domain(d)) => {
            let found =
                tokio::net::lookup_host((d, port))
                    .await
                    .map_err(|e| UrlError::Resolve {
                        host: d.to_string(),
                        message: e.to_string(),
                    })?;
            (d.to_string(), found.collect())
        }
        None => return Err(UrlError::NoHost),
    };
    if addrs.is_empty() {
        return Err(UrlError::Resolve {
            host,
            message: "no addresses".into(),
        });
    }
    for a in &addrs {
        // The cloud's metadata service stays out of reach even when private
        // networks are allowed: it hands out the host's credentials.
        let why = match forbidden(a.ip()) {
            Some(why) if !allow_private || is_metadata(a.ip()) => why,
            _ => continue,
        };
        return Err(UrlError::Forbidden {
            host,
            addr: a.ip(),
            why,
        });
    }
    Ok(CheckedUrl {
        url: u,
        host,
        addrs,
    })
}

/// A client that reaches `checked`'s host only at its checked addresses,
/// follows no redirect, ignores proxy variables and gives up after
/// [`DELIVERY_TIMEOUT`].
pub fn pinned_client(checked: &CheckedUrl) -> Result<reqwest::Client, reqwest::Error> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(DELIVERY_TIMEOUT)
        .connect_timeout(DELIVERY_TIMEOUT)
        .user_agent(concat!("raincast-webhooks/", env!("CARGO_PKG_VERSION")));
    if matches!(checked.url.host(), Some(url::Host::Domain(_))) {
        b = b.resolve_to_addrs(&checked.host, &checked.addrs);
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_metadata_addresses_are_forbidden() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "::a9fe:a9fe",
            "::169.254.169.254",
            "2002:a9fe:a9fe::",
            "2002:7f00:1::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
        ] {
            let ip: IpAddr = bad.parse().expect("ip");
            assert!(forbidden(ip).is_some(), "{bad} allowed");
        }
        for good in [
            "93.184.215.14",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "2002:5db8:d70e::1",
        ] {
            let ip: IpAddr = good.parse().expect("ip");
            assert_eq!(forbidden(ip), None, "{good}");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_by_form_and_by_address() {
        assert!(matches!(
            check("http://example.org/x", false).await,
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            check("https://u:p@example.org/x", false).await,
            Err(UrlError::Credentials)
        ));
        assert!(matches!(
            check("not a url", false).await,
            Err(UrlError::Syntax(_))
        ));
        for url in [
            "https://127.0.0.1/hook",
            "https://10.0.0.7:8443/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/hook",
            "https://[fd00:ec2::254]/",
            // A name resolving to loopback is refused like the address.
            "https://localhost/hook",
        ] {
            let err = check(url, false).await.expect_err(url);
            assert!(matches!(err, UrlError::Forbidden { .. }), "{url}: {err:?}");
            assert!(!err.is_transient());
        }
        // Lifted for private networks and tests, http included.
        let ok = check("http://127.0.0.1:9/hook", true)
            .await
            .expect("allowed");
        assert_eq!(ok.addrs, vec!["127.0.0.1:9".parse().expect("addr")]);
        // Except for the cloud's metadata service, in any form.
        for url in [
            "http://169.254.169.254/latest/meta-data",
            "http://[::ffff:169.254.169.254]/",
            "http://[2002:a9fe:a9fe::]/",
            "http://[fd00:ec2::254]/",
        ] {
            let err = check(url, true).await.expect_err(url);
            assert!(matches!(err, UrlError::Forbidden { .. }), "{url}: {err:?}");
        }
    }
}
