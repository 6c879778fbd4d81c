//! Pure TC3-HMAC-SHA256 ("signature v3") signing: no I/O and no clock reads.
//!
//! The caller supplies the timestamp, the exact body bytes and the headers to sign; the
//! result carries every intermediate value so that tests can pin each step against the
//! official worked examples, and so that the simulator can verify with the same code.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The only algorithm name Tencent Cloud accepts for signature v3.
pub(crate) const ALGORITHM: &str = "TC3-HMAC-SHA256";

/// What goes into a signature. Header names may be in any case; values are trimmed.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// `POST` or `GET`.
    pub method: &'a str,
    /// Canonical URI; always `/` for this API.
    pub uri: &'a str,
    /// Canonical query string (empty for POST).
    pub query: &'a str,
    /// Headers to sign, `(name, value)`; must include `content-type` and `host`.
    pub headers: &'a [(&'a str, &'a str)],
    /// The exact body bytes that are sent.
    pub payload: &'a [u8],
    /// Scope service (`cvm`, `lighthouse`, `sts`): the product, never the region.
    pub service: &'a str,
    /// Unix seconds, the value of `X-TC-Timestamp`.
    pub timestamp: i64,
}

/// Every value the algorithm produces, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Step 1: the canonical request (no trailing newline).
    pub canonical_request: String,
    /// `;`-joined lowercase names of the signed headers.
    pub signed_headers: String,
    /// Hex SHA-256 of the payload.
    pub hashed_payload: String,
    /// Step 2: the string to sign.
    pub string_to_sign: String,
    /// `YYYY-MM-DD` in UTC from the timestamp.
    pub date: String,
    /// Lowercase hex signature.
    pub signature: String,
}

impl Signature {
    /// The `Authorization` header value for `secret_id`.
    pub(crate) fn authorization(&self, secret_id: &str, service: &str) -> String {
        format!(
            "{ALGORITHM} Credential={secret_id}/{}/{service}/tc3_request, SignedHeaders={}, Signature={}",
            self.date, self.signed_headers, self.signature
        )
    }
}

/// Lowercase hex SHA-256 of `data`.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac =
        <HmacSha256 as hmac::KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// The three derived keys, `SecretDate`, `SecretService` and `SecretSigning`.
pub(crate) fn derive_keys(secret_key: &str, date: &str, service: &str) -> [[u8; 32]; 3] {
    let secret_date = hmac(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let secret_service = hmac(&secret_date, service.as_bytes());
    let secret_signing = hmac(&secret_service, b"tc3_request");
    [secret_date, secret_service, secret_signing]
}

/// The UTC calendar date `YYYY-MM-DD` of a Unix timestamp (proleptic Gregorian).
pub(crate) fn utc_date(timestamp: i64) -> String {
    let days = timestamp.div_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Canonical headers (`name:value\n` each, sorted) and the signed-headers list.
fn canonical_headers(headers: &[(&str, &str)]) -> (String, String) {
    let mut list: Vec<(String, &str)> = headers
        .iter()
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim()))
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    let mut canonical = String::new();
    for (name, value) in &list {
        // The doc demo lowercases the X-TC-Action value when it is signed.
        let value = if name == "x-tc-action" {
            value.to_ascii_lowercase()
        } else {
            (*value).to_owned()
        };
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(&value);
        canonical.push('\n');
    }
    let signed = list
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (canonical, signed)
}

/// Signs `req` with `secret_key`.
pub fn sign(secret_key: &str, req: &Request<'_>) -> Signature {
    let (canonical_headers, signed_headers) = canonical_headers(req.headers);
    let hashed_payload = sha256_hex(req.payload);
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method, req.uri, req.query, canonical_headers, signed_headers, hashed_payload
    );
    let date = utc_date(req.timestamp);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{}/{}/tc3_request\n{}",
        req.timestamp,
        date,
        req.service,
        sha256_hex(canonical_request.as_bytes())
    );
    let [_, _, signing_key] = derive_keys(secret_key, &date, req.service);
    let signature = hex::encode(hmac(&signing_key, string_to_sign.as_bytes()));
    Signature {
        canonical_request,
        signed_headers,
        hashed_payload,
        string_to_sign,
        date,
        signature,
    }
}

/// A parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The SecretId from the credential scope.
    pub secret_id: String,
    /// Scope date.
    pub date: String,
    /// Scope service.
    pub service: String,
    /// Lowercase header names, in the order given.
    pub signed_headers: Vec<String>,
    /// Hex signature as sent.
    pub signature: String,
}

#[cfg_attr(not(feature = "sim"), allow(dead_code))] // the simulator's
/// Parses `TC3-HMAC-SHA256 Credential=ID/DATE/SERVICE/tc3_request, SignedHeaders=a;b, Signature=hex`.
///
/// Returns `None` for anything else; the caller reports `AuthFailure.InvalidAuthorization`.
pub(crate) fn parse_authorization(value: &str) -> Option<Authorization> {
    let rest = value.strip_prefix(ALGORITHM)?.strip_prefix(' ')?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (key, val) = part.trim().split_once('=')?;
        match key {
            "Credential" => credential = Some(val),
            "SignedHeaders" => signed = Some(val),
            "Signature" => signature = Some(val),
            _ => return None,
        }
    }
    let mut scope = credential?.split('/');
    let secret_id = scope.next()?.to_owned();
    let date = scope.next()?.to_owned();
    let service = scope.next()?.to_owned();
    if scope.next()? != "tc3_request" || scope.next().is_some() || secret_id.is_empty() {
        return None;
    }
    let signed_headers: Vec<String> = signed?.split(';').map(str::to_owned).collect();
    let signature = signature?.to_owned();
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(Authorization {
        secret_id,
        date,
        service,
        signed_headers,
        signature,
    })
}

#[cfg_attr(not(feature = "sim"), allow(dead_code))] // the simulator's
/// Constant-time check that `expected_hex` (ours) equals `given_hex` (theirs).
pub(crate) fn signatures_match(expected_hex: &str, given_hex: &str) -> bool {
    crate::redact::ct_eq(expected_hex.as_bytes(), given_hex.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STARS_ID: &str = "AKID********************************";
    const STARS_KEY: &str = "********************************";
    const EX_KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";
    const EX_ID: &str = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE";
    const DESCRIBE_PAYLOAD: &str =
        r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
    const JSON_UTF8: &str = "application/json; charset=utf-8";

    fn post<'a>(
        headers: &'a [(&'a str, &'a str)],
        payload: &'a str,
        service: &'a str,
        ts: i64,
    ) -> Request<'a> {
        Request {
            method: "POST",
            uri: "/",
            query: "",
            headers,
            payload: payload.as_bytes(),
            service,
            timestamp: ts,
        }
    }

    #[test]
    fn payload_is_86_bytes_of_literal_escapes() {
        assert_eq!(DESCRIBE_PAYLOAD.len(), 86);
    }

    /// Vector A: the current official doc, signing x-tc-action too; pins every derived key.
    #[test]
    fn vector_a_official_with_action() {
        let headers = [
            ("Content-Type", JSON_UTF8),
            ("Host", "cvm.tencentcloudapi.com"),
            ("X-TC-Action", "DescribeInstances"),
        ];
        let sig = sign(
            STARS_KEY,
            &post(&headers, DESCRIBE_PAYLOAD, "cvm", 1_551_113_065),
        );
        assert_eq!(
            sig.canonical_request,
            "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\nx-tc-action:describeinstances\n\ncontent-type;host;x-tc-action\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        assert_eq!(
            sig.string_to_sign,
            "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84"
        );
        let keys = derive_keys(STARS_KEY, "2019-02-25", "cvm");
        assert_eq!(
            hex::encode(keys[0]),
            "da98fb70dcf6b112dc21038d1eeeb3a95c74b4dcb12c1131f864f6066bd02be0"
        );
        assert_eq!(
            hex::encode(keys[1]),
            "8d70cbefb03939f929db64d32dc2ba89b1095620119fe3e050e2b18c5bd2752f"
        );
        assert_eq!(
            hex::encode(keys[2]),
            "b596b923aad85185e2d1f6659d2a062e0a86731226e021e61bfe06f7ed05f5af"
        );
        assert_eq!(
            sig.signature,
            "10b1a37a7301a02ca19a647ad722d5e43b4b3cff309d421d85b46093f6ab6c4f"
        );
        assert_eq!(
            sig.authorization(STARS_ID, "cvm"),
            "TC3-HMAC-SHA256 Credential=AKID********************************/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host;x-tc-action, Signature=10b1a37a7301a02ca19a647ad722d5e43b4b3cff309d421d85b46093f6ab6c4f"
        );
    }

    /// Vector B: the earlier English doc, signing content-type and host only.
    #[test]
    fn vector_b_official_content_type_host() {
        let headers = [
            ("Content-Type", JSON_UTF8),
            ("Host", "cvm.tencentcloudapi.com"),
        ];
        let sig = sign(
            EX_KEY,
            &post(&headers, DESCRIBE_PAYLOAD, "cvm", 1_551_113_065),
        );
        assert_eq!(
            sig.canonical_request,
            "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\ncontent-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        assert_eq!(
            sig.string_to_sign,
            "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        let keys = derive_keys(EX_KEY, "2019-02-25", "cvm");
        assert_eq!(
            hex::encode(keys[0]),
            "d1308c81fe71cfd4e06437bbc067b2b8a3d2d8c0e375d547f15c41d5214b395a"
        );
        assert_eq!(
            hex::encode(keys[1]),
            "3c7cb7c7795393edc14fd2e0e6434a518564b4504b88e94f5d11bf59ba3e7050"
        );
        assert_eq!(
            hex::encode(keys[2]),
            "ac658d5dde49e9bfdd14e04e062f66b05d9f637d44b8a8d845327d4a77f666b1"
        );
        assert_eq!(
            sig.signature,
            "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
        assert_eq!(
            sig.authorization(EX_ID, "cvm"),
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
    }

    /// Vector C: the older GET example with a query and an empty payload.
    #[test]
    fn vector_c_official_get() {
        let headers = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Host", "cvm.tencentcloudapi.com"),
        ];
        let req = Request {
            method: "GET",
            uri: "/",
            query: "Limit=10&Offset=0",
            headers: &headers,
            payload: b"",
            service: "cvm",
            timestamp: 1_539_084_154,
        };
        let sig = sign(EX_KEY, &req);
        assert_eq!(
            sig.canonical_request,
            "GET\n/\nLimit=10&Offset=0\ncontent-type:application/x-www-form-urlencoded\nhost:cvm.tencentcloudapi.com\n\ncontent-type;host\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sig.string_to_sign,
            "TC3-HMAC-SHA256\n1539084154\n2018-10-09/cvm/tc3_request\n91c9c192c14460df6c1ffc69e34e6c5e90708de2a6d282cccf957dbf1aa7f3a7"
        );
        assert_eq!(
            sig.signature,
            "5da7a33f6993f0614b047e5df4582db9e9bf4672ba50567dba16c6ccf174c474"
        );
    }

    struct Fixture {
        name: &'static str,
        host: &'static str,
        service: &'static str,
        payload: &'static str,
        content_type: &'static str,
        sign_action: bool,
        ts: i64,
        hashed_payload: &'static str,
        hashed_canonical: Option<&'static str>,
        signature: &'static str,
    }

    const D1_PAYLOAD: &str = r#"{"InstanceId":"ins-r9hr2upy"}"#;
    const D1_HASH: &str = "b16bc821b8fd758a0da9c0d51062abc8e62244708afd0b9eb16758c7f20b972b";

    const FIXTURES: &[Fixture] = &[
        Fixture {
            name: "D1",
            host: "cvm.tencentcloudapi.com",
            service: "cvm",
            payload: D1_PAYLOAD,
            content_type: JSON_UTF8,
            sign_action: false,
            ts: 1_551_113_065,
            hashed_payload: D1_HASH,
            hashed_canonical: Some(
                "5c361fddbfa6347dfdb16f3a0d3b326c568f28dd455235249fbaca601b00d9ec",
            ),
            signature: "b14e5d7c1a50d718cac861f7f0d8d76d6eec3e0621ad9ea6824e864271f8cb0e",
        },
        Fixture {
            name: "D2",
            host: "cvm.tencentcloudapi.com",
            service: "cvm",
            payload: D1_PAYLOAD,
            content_type: JSON_UTF8,
            sign_action: true,
            ts: 1_551_113_065,
            hashed_payload: D1_HASH,
            hashed_canonical: Some(
                "c2e8f16baf6b1519739436ec3c55a0527d2b39af05a1810274c2385503d7473e",
            ),
            signature: "6335a9bc554a661cc9fbf0a6ceb43676376fc90aed74b53c3beec9a742583a0c",
        },
        Fixture {
            name: "D3",
            host: "lighthouse.tencentcloudapi.com",
            service: "lighthouse",
            payload: r#"{"InstanceId":"lhins-ruy9d2tw"}"#,
            content_type: "application/json",
            sign_action: false,
            ts: 1_551_113_065,
            hashed_payload: "b42a35866efa3a7681e1f148d2ff1e4469b78b9bd7899619cd77a16508c717a2",
            hashed_canonical: Some(
                "db4a699d3249f536bb6360e50b5965baca6269f9451f935e4c7834c2c8318054",
            ),
            signature: "dc707a3ea128b25047f88d12a286f04fb356fb611c4e87952b656b8381126f03",
        },
        Fixture {
            name: "D4 (2019-02-26T00:00:00Z)",
            host: "cvm.tencentcloudapi.com",
            service: "cvm",
            payload: D1_PAYLOAD,
            content_type: JSON_UTF8,
            sign_action: false,
            ts: 1_551_139_200,
            hashed_payload: D1_HASH,
            hashed_canonical: None,
            signature: "3646f3aa0e40650446b608e7afb4257733c88d39ba162333497e1906cb534311",
        },
        Fixture {
            name: "D5 (2019-02-25T23:59:59Z)",
            host: "cvm.tencentcloudapi.com",
            service: "cvm",
            payload: D1_PAYLOAD,
            content_type: JSON_UTF8,
            sign_action: false,
            ts: 1_551_139_199,
            hashed_payload: D1_HASH,
            hashed_canonical: None,
            signature: "b700385a0b44459254c39da101afa72d1e222205f5ce34c26f70635bbde16c70",
        },
    ];

    /// The computed DescribeInstanceVncUrl fixtures D1–D5 of the reference.
    #[test]
    fn describe_instance_vnc_url_fixtures() {
        for f in FIXTURES {
            let mut headers = vec![("Content-Type", f.content_type), ("Host", f.host)];
            if f.sign_action {
                headers.push(("X-TC-Action", "DescribeInstanceVncUrl"));
            }
            let sig = sign(STARS_KEY, &post(&headers, f.payload, f.service, f.ts));
            assert_eq!(sig.hashed_payload, f.hashed_payload, "{}", f.name);
            if let Some(h) = f.hashed_canonical {
                assert_eq!(
                    sha256_hex(sig.canonical_request.as_bytes()),
                    h,
                    "{}",
                    f.name
                );
            }
            assert_eq!(sig.signature, f.signature, "{}", f.name);
        }
    }

    /// The scope date is the UTC date, across the midnight boundary and in UTC+8's "tomorrow".
    #[test]
    fn utc_date_boundary() {
        assert_eq!(utc_date(1_551_113_065), "2019-02-25");
        assert_eq!(utc_date(1_551_139_199), "2019-02-25");
        assert_eq!(utc_date(1_551_139_200), "2019-02-26");
        assert_eq!(utc_date(1_539_084_154), "2018-10-09");
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(4_107_542_400), "2100-03-01");
        assert_eq!(utc_date(-1), "1969-12-31");
    }

    /// A different key gives a different signature: the check can fail.
    #[test]
    fn wrong_key_changes_signature() {
        let headers = [
            ("Content-Type", JSON_UTF8),
            ("Host", "cvm.tencentcloudapi.com"),
        ];
        let good = sign(STARS_KEY, &post(&headers, D1_PAYLOAD, "cvm", 1_551_113_065));
        let bad = sign("wrong", &post(&headers, D1_PAYLOAD, "cvm", 1_551_113_065));
        assert!(!signatures_match(&good.signature, &bad.signature));
        assert!(signatures_match(&good.signature, &good.signature.clone()));
    }

    #[test]
    fn authorization_round_trips() {
        let value = "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168";
        let auth = parse_authorization(value).expect("parses");
        assert_eq!(auth.secret_id, EX_ID);
        assert_eq!(auth.date, "2019-02-25");
        assert_eq!(auth.service, "cvm");
        assert_eq!(auth.signed_headers, vec!["content-type", "host"]);
        for bad in [
            "",
            "TC3-HMAC-SHA256",
            "HMAC-SHA1 Credential=a/b/c/tc3_request, SignedHeaders=host, Signature=00",
            "TC3-HMAC-SHA256 Credential=a/b/c/other, SignedHeaders=host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168",
            "TC3-HMAC-SHA256 Credential=a/b/c/tc3_request, SignedHeaders=host, Signature=zz",
            "TC3-HMAC-SHA256 Credential=/b/c/tc3_request, SignedHeaders=host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168",
        ] {
            assert!(parse_authorization(bad).is_none(), "{bad}");
        }
    }
}
