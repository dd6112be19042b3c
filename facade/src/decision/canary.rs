//! The sticky canary: which side serves a request while a capability is at
//! `canary N%`.
//!
//! A request's sticky key (a header, a cookie or the client's address) is
//! hashed with the capability's name into one of 1000 buckets; buckets below
//! the share go to the service. The hash is stable, so one key always lands
//! in one bucket: a user keeps seeing one side, and as the share only grows
//! a key that reached the service stays there. A request without the
//! configured header or cookie falls back to the client's address.
//!
//! The hash is FNV-1a with a SplitMix64 finish, written out here because
//! every facade replica must put a key in the same bucket whatever toolchain
//! built it, which the standard library's hasher does not promise.

use std::net::IpAddr;

use hyper::header::{self, HeaderName};
use hyper::HeaderMap;

use crate::decision::stage::Permille;

/// What keeps a client on one side of a canary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    /// The value of this request header (e.g. a user id).
    Header(HeaderName),
    /// The value of this cookie (e.g. a session).
    Cookie(String),
    /// The client's IP address.
    ClientAddress,
}

impl StickyKey {
    /// Parses `header:<name>`, `cookie:<name>` or `client`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            Some(("header", name)) => HeaderName::from_bytes(name.trim().as_bytes())
                .map(StickyKey::Header)
                .map_err(|_| format!("sticky key `{text}`: `{name}` is not a header name")),
            Some(("cookie", name)) if valid_cookie_name(name) => Ok(StickyKey::Cookie(name.to_owned())),
            Some(("cookie", name)) => Err(format!("sticky key `{text}`: `{name}` is not a cookie name")),
            None if text == "client" => Ok(StickyKey::ClientAddress),
            _ => Err(format!(
                "sticky key `{text}` must be `header:<name>`, `cookie:<name>` or `client`"
            )),
        }
    }

    /// Hashes this request's key for `capability` into a bucket (0 to 999).
    pub fn bucket(&self, capability: &str, headers: &HeaderMap, client: IpAddr) -> u16 {
        let value = match self {
            StickyKey::Header(name) => headers.get(name).map(|v| v.as_bytes()),
            StickyKey::Cookie(name) => cookie(headers, name),
            StickyKey::ClientAddress => None,
        };
        match value {
            Some(value) => bucket(capability, value),
            None => match client {
                IpAddr::V4(ip) => bucket(capability, &ip.octets()),
                IpAddr::V6(ip) => bucket(capability, &ip.octets()),
            },
        }
    }
}

/// Whether a key in `bucket` goes to the service at `share`.
pub fn to_service(bucket: u16, share: Permille) -> bool {
    bucket < share.get()
}

/// The bucket (0 to 999) of `key` within `capability`.
pub fn bucket(capability: &str, key: &[u8]) -> u16 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    // The separator keeps ("ab", "c") and ("a", "bc") apart.
    for byte in capability.as_bytes().iter().chain(&[0xff]).chain(key) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    // SplitMix64's finish spreads FNV's weak low bits over the whole word.
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^= hash >> 31;
    (hash % 1000) as u16
}

fn valid_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// The value of cookie `name`, from any `Cookie` header.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::http::HeaderValue;

    #[test]
    fn keys_parse() {
        assert_eq!(
            StickyKey::parse("header:X-Customer-Id"),
            Ok(StickyKey::Header(HeaderName::from_static("x-customer-id")))
        );
        assert_eq!(
            StickyKey::parse("cookie:session"),
            Ok(StickyKey::Cookie("session".into()))
        );
        assert_eq!(StickyKey::parse("client"), Ok(StickyKey::ClientAddress));
        assert!(StickyKey::parse("ip").is_err());
        assert!(StickyKey::parse("header:bad header").is_err());
        assert!(StickyKey::parse("cookie:a;b").is_err());
    }

    #[test]
    fn the_share_of_keys_follows_the_percentage_and_only_grows() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
        let at = |permille: u16| -> Vec<bool> {
            let share = Permille::new(permille).unwrap();
            keys.iter()
                .map(|k| to_service(bucket("orders", k.as_bytes()), share))
                .collect()
        };
        let ten = at(100);
        let fifty = at(500);
        let on_service = ten.iter().filter(|s| **s).count();
        assert!((800..1200).contains(&on_service), "{on_service} of 10000 at 10%");
        let on_service = fifty.iter().filter(|s| **s).count();
        assert!((4700..5300).contains(&on_service), "{on_service} of 10000 at 50%");
        assert!(ten
            .iter()
            .zip(&fifty)
            .all(|(at_ten, at_fifty)| !at_ten || *at_fifty));
        assert!(at(1000).iter().all(|s| *s));
    }

    #[test]
    fn a_key_is_read_from_its_header_or_cookie_else_the_client() {
        let client: IpAddr = "10.1.2.3".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; session=abc"),
        );
        let by_cookie = StickyKey::Cookie("session".into());
        assert_eq!(by_cookie.bucket("c", &headers, client), bucket("c", b"abc"));
        let by_header = StickyKey::Header(HeaderName::from_static("x-user"));
        assert_eq!(
            by_header.bucket("c", &headers, client),
            bucket("c", &[10, 1, 2, 3])
        );
        headers.insert("x-user", HeaderValue::from_static("42"));
        assert_eq!(by_header.bucket("c", &headers, client), bucket("c", b"42"));
        assert_ne!(bucket("catalog", b"42"), bucket("orders", b"42"));
    }
}
