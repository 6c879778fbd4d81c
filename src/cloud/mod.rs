//! The Tencent Cloud API: products and endpoints, signing, credentials, the client and
//! its errors, instance listings (`listing`), and the one-time `InstanceVncUrl`.

pub mod client;
pub mod credentials;
pub mod error;
pub mod listing;
pub mod sign;
pub mod states;
pub mod vnc_url;

pub use client::{ClientOptions, CloudClient, InstanceInfo, MintOutcome, Minted};
pub use error::{ApiError, Class, Error, Kind};
pub use listing::{Filter, InstancePage, ListedInstance};
pub use vnc_url::VncUrl;

use std::net::IpAddr;

/// The local wall clock in Unix seconds (what a request is signed with, before the
/// offset learned from the server is added, and what credential expiry is judged by).
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The instance id rule for every product.
pub(crate) fn instance_id_valid(product: Product, id: &str) -> bool {
    id.strip_prefix(product.id_prefix()).is_some_and(|rest| {
        rest.len() == 8
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// Which API a target's instance lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Product {
    /// Cloud Virtual Machine, `ins-` ids.
    Cvm,
    /// Lighthouse, `lhins-` ids.
    Lighthouse,
}

impl Product {
    /// Scope service and first host label.
    pub fn service(self) -> &'static str {
        match self {
            Product::Cvm => "cvm",
            Product::Lighthouse => "lighthouse",
        }
    }

    /// `X-TC-Version`.
    pub fn version(self) -> &'static str {
        match self {
            Product::Cvm => "2017-03-12",
            Product::Lighthouse => "2020-03-24",
        }
    }

    /// Instance id prefix.
    pub(crate) fn id_prefix(self) -> &'static str {
        match self {
            Product::Cvm => "ins-",
            Product::Lighthouse => "lhins-",
        }
    }

    #[cfg_attr(not(feature = "sim"), allow(dead_code))] // the simulator's
    /// The product whose scope service is `service`.
    pub(crate) fn from_service(service: &str) -> Option<Self> {
        match service {
            "cvm" => Some(Product::Cvm),
            "lighthouse" => Some(Product::Lighthouse),
            _ => None,
        }
    }
}

/// Default root domain of the API.
pub(crate) const ROOT_DOMAIN: &str = "tencentcloudapi.com";

/// Where API requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://host[:port]`, no trailing slash.
    pub base: String,
    /// The `Host` header (with `:port` when not the default): signed and sent.
    pub host: String,
}

/// How the API host is chosen for a product and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// An explicit endpoint, used for every region.
    pub override_endpoint: Option<Endpoint>,
    /// `tencentcloudapi.com`, or `intl.tencentcloudapi.com` for the international site.
    pub root_domain: String,
    /// Pin the API access point to the region (`cvm.ap-beijing.tencentcloudapi.com`).
    pub regional: bool,
}

impl Default for EndpointPolicy {
    fn default() -> Self {
        EndpointPolicy {
            override_endpoint: None,
            root_domain: ROOT_DOMAIN.to_owned(),
            regional: false,
        }
    }
}

impl EndpointPolicy {
    /// The endpoint for `product` in `region`. Finance regions (`*-fsi`) always use the
    /// regional host.
    pub fn endpoint(&self, product: Product, region: &str) -> Endpoint {
        if let Some(e) = &self.override_endpoint {
            return e.clone();
        }
        let service = product.service();
        let host = if self.regional || region.ends_with("-fsi") {
            format!("{service}.{region}.{}", self.root_domain)
        } else {
            format!("{service}.{}", self.root_domain)
        };
        Endpoint {
            base: format!("https://{host}"),
            host,
        }
    }
}

/// Parses an explicit endpoint: `https://host[:port]`, or `http://` for loopback hosts only.
///
/// # Errors
/// A message naming what is wrong and what is expected.
pub fn parse_endpoint(raw: &str) -> Result<Endpoint, String> {
    let url = reqwest::Url::parse(raw)
        .map_err(|e| format!("{raw:?} is not a URL ({e}); expected https://host[:port]"))?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("{raw:?} has no host; expected https://host[:port]"))?;
    if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
        return Err(format!(
            "{raw:?} must be a bare origin (no path, query or user); expected https://host[:port]"
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(host) => {}
        "http" => {
            return Err(format!(
                "{raw:?} uses plain http for a non-loopback host; use https (http is only allowed for 127.0.0.1, ::1 or localhost)"
            ))
        }
        s => return Err(format!("{raw:?} has scheme {s:?}; expected https")),
    }
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    Ok(Endpoint {
        base: format!("{}://{host_header}", url.scheme()),
        host: host_header,
    })
}

/// True for `localhost` and loopback addresses (bracketed IPv6 accepted).
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_by_region_and_policy() {
        let p = EndpointPolicy::default();
        assert_eq!(
            p.endpoint(Product::Cvm, "ap-beijing").host,
            "cvm.tencentcloudapi.com"
        );
        assert_eq!(
            p.endpoint(Product::Cvm, "ap-shanghai-fsi").base,
            "https://cvm.ap-shanghai-fsi.tencentcloudapi.com"
        );
        let regional = EndpointPolicy {
            regional: true,
            ..EndpointPolicy::default()
        };
        assert_eq!(
            regional.endpoint(Product::Lighthouse, "ap-tokyo").host,
            "lighthouse.ap-tokyo.tencentcloudapi.com"
        );
        let intl = EndpointPolicy {
            root_domain: "intl.tencentcloudapi.com".into(),
            ..EndpointPolicy::default()
        };
        assert_eq!(
            intl.endpoint(Product::Cvm, "na-ashburn").host,
            "cvm.intl.tencentcloudapi.com"
        );
    }

    #[test]
    fn explicit_endpoints() {
        let e = parse_endpoint("http://127.0.0.1:8080").expect("loopback http");
        assert_eq!(e.host, "127.0.0.1:8080");
        assert_eq!(e.base, "http://127.0.0.1:8080");
        assert_eq!(
            parse_endpoint("https://cvm.example.com/")
                .expect("https")
                .host,
            "cvm.example.com"
        );
        assert!(parse_endpoint("http://[::1]:9").is_ok());
        assert!(parse_endpoint("http://localhost:9").is_ok());
        assert!(parse_endpoint("http://10.0.0.1:80")
            .expect_err("plain")
            .contains("loopback"));
        assert!(parse_endpoint("https://h/path").is_err());
        assert!(parse_endpoint("ftp://h").is_err());
        assert!(parse_endpoint("nonsense").is_err());
    }

    #[test]
    fn instance_ids() {
        assert!(instance_id_valid(Product::Cvm, "ins-r9hr2upy"));
        assert!(instance_id_valid(Product::Lighthouse, "lhins-ruy9d2tw"));
        for bad in [
            "ins-1122",
            "ins-R9HR2UPY",
            "lhins-ruy9d2tw",
            "ins-r9hr2upy0",
            "",
            "ins-r9hr2up_",
        ] {
            assert!(!instance_id_valid(Product::Cvm, bad), "{bad}");
        }
    }
}
