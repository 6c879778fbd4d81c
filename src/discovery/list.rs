//! One listing for `[discovery]`: the server-side filters sent (`tag:<key>` for every
//! tag, `instance-name` only when every name pattern is a plain name), the pages walked
//! (`Offset`/`Limit` of [`MAX_LIMIT`] until `TotalCount`), and the name patterns and tags
//! checked again here. No URL is spent; every page goes through the API limiter.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cloud::listing::MAX_LIMIT;
use crate::cloud::{self, CloudClient, Filter, ListedInstance, Product};
use crate::config::DiscoveryConfig;

/// The most pages one region is walked for (20,000 instances at 100 a page).
pub(crate) const MAX_PAGES: u64 = 200;

/// An instance discovery found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discovered {
    /// Instance id.
    #[serde(rename = "instance")]
    pub id: String,
    /// `InstanceName`.
    pub name: String,
    /// `InstanceState` when last listed.
    pub state: String,
    /// The region it was listed in.
    pub region: String,
    /// Its availability zone (may be empty).
    pub zone: String,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

/// Why a listing failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// A `DescribeInstances` call failed.
    #[error("listing instances in {region} failed: {error}")]
    Cloud {
        /// The region.
        region: String,
        /// The classified API error (its text says what to fix).
        error: cloud::Error,
    },
    /// More pages than [`MAX_PAGES`].
    #[error("more than {} instances match [discovery] in {region}: narrow it with tags or names", MAX_PAGES * u64::from(MAX_LIMIT))]
    TooMany {
        /// The region.
        region: String,
    },
}

/// Whether `name` matches the glob `pattern`: `*` matches any run of characters
/// (none included), `?` exactly one; everything else itself, case-sensitively.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it is now assumed to run to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    // Let the last `*` swallow one more character and try again.
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether a pattern is a plain name (no `*` or `?`).
fn is_literal(pattern: &str) -> bool {
    !pattern.contains(['*', '?'])
}

/// The filters the cloud applies: one `tag:<key>` per tag, and `instance-name` with the
/// names when every pattern is a plain name and they fit the cloud's value limit (the
/// cloud matches names loosely, so [`passes`] checks them again either way).
pub(crate) fn server_filters(d: &DiscoveryConfig, product: Product) -> Vec<Filter> {
    let mut out: Vec<Filter> = d
        .tags
        .iter()
        .map(|(k, v)| Filter {
            name: format!("tag:{k}"),
            values: vec![v.clone()],
        })
        .collect();
    // CVM takes 100 filter values per request, Lighthouse 5 per filter.
    let room = match product {
        Product::Cvm => 100usize.saturating_sub(out.len()),
        Product::Lighthouse => 5,
    };
    if !d.names.is_empty() && d.names.len() <= room && d.names.iter().all(|n| is_literal(n)) {
        out.push(Filter {
            name: "instance-name".into(),
            values: d.names.clone(),
        });
    }
    out
}

/// Whether a listed instance belongs to `[discovery]`: every tag, and a name pattern
/// when there are any.
pub(crate) fn passes(d: &DiscoveryConfig, i: &ListedInstance) -> bool {
    d.tags.iter().all(|(k, v)| i.tags.get(k) == Some(v))
        && (d.names.is_empty() || d.names.iter().any(|p| glob_match(p, &i.name)))
}

/// Every instance of `[discovery]` in `region`, walking the pages until `TotalCount`
/// (or a short page). Ids that are not the product's are skipped.
///
/// # Errors
/// [`ListError`] naming the region.
pub async fn list_region(
    client: &CloudClient,
    d: &DiscoveryConfig,
    region: &str,
) -> Result<Vec<Discovered>, ListError> {
    let product = client.product();
    let filters = server_filters(d, product);
    let mut out: Vec<Discovered> = Vec::new();
    let mut offset = 0u64;
    for _ in 0..MAX_PAGES {
        let page = client
            .list_instances(region, &filters, offset, MAX_LIMIT)
            .await
            .map_err(|error| ListError::Cloud {
                region: region.to_owned(),
                error,
            })?;
        let got = page.instances.len() as u64;
        for i in page.instances {
            if !cloud::instance_id_valid(product, &i.id) {
                tracing::debug!(region, id = %i.id, "DescribeInstances listed an id that is not a {} instance id; skipped", product.service());
                continue;
            }
            if !passes(d, &i) || out.iter().any(|o| o.id == i.id) {
                continue;
            }
            out.push(Discovered {
                id: i.id,
                name: i.name,
                state: i.state,
                region: region.to_owned(),
                zone: i.zone,
                tags: i.tags,
            });
        }
        offset += got;
        if got < u64::from(MAX_LIMIT) || offset >= page.total {
            return Ok(out);
        }
    }
    Err(ListError::TooMany {
        region: region.to_owned(),
    })
}

/// Every instance of `[discovery]` in all its regions (an id listed in two regions is
/// kept in the first).
///
/// # Errors
/// The first region that fails.
pub async fn list(client: &CloudClient, d: &DiscoveryConfig) -> Result<Vec<Discovered>, ListError> {
    let mut out: Vec<Discovered> = Vec::new();
    for region in &d.regions {
        for i in list_region(client, d, region).await? {
            if !out.iter().any(|o| o.id == i.id) {
                out.push(i);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn globs() {
        for (p, n, want) in [
            ("web-*", "web-1", true),
            ("web-*", "web-", true),
            ("web-*", "db-1", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("web-?", "web-12", false),
            ("web-??", "web-12", true),
            ("*-prod-*", "eu-prod-7", true),
            ("*-prod-*", "eu-staging-7", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("Web-*", "web-1", false),
            ("网站-*", "网站-一", true),
            ("**x", "abx", true),
        ] {
            assert_eq!(glob_match(p, n), want, "{p:?} vs {n:?}");
        }
    }

    fn cfg(names: &[&str], tags: &[(&str, &str)]) -> DiscoveryConfig {
        DiscoveryConfig {
            regions: vec!["ap-guangzhou".into()],
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            refresh: Duration::from_secs(60),
        }
    }

    /// Tags always go to the cloud; names only when they are all plain names.
    #[test]
    fn filters_sent() {
        let f = server_filters(&cfg(&["web-*"], &[("env", "prod")]), Product::Cvm);
        assert_eq!(
            f,
            [Filter {
                name: "tag:env".into(),
                values: vec!["prod".into()]
            }]
        );
        let f = server_filters(&cfg(&["web-1", "web-2"], &[]), Product::Cvm);
        assert_eq!(f[0].name, "instance-name");
        assert_eq!(f[0].values, ["web-1", "web-2"]);
        let six: Vec<String> = (0..6).map(|i| format!("n{i}")).collect();
        let six: Vec<&str> = six.iter().map(String::as_str).collect();
        assert!(server_filters(&cfg(&six, &[]), Product::Lighthouse).is_empty());
    }

    /// The local check: every tag, and any name pattern.
    #[test]
    fn local_check() {
        let i = ListedInstance {
            id: "ins-aaaaaaaa".into(),
            name: "web-1".into(),
            state: "RUNNING".into(),
            zone: String::new(),
            tags: [("env".to_owned(), "prod".to_owned())].into(),
        };
        assert!(passes(&cfg(&[], &[]), &i));
        assert!(passes(&cfg(&["db-*", "web-*"], &[("env", "prod")]), &i));
        assert!(!passes(&cfg(&["web-1"], &[("env", "dev")]), &i));
        assert!(
            !passes(&cfg(&["web"], &[]), &i),
            "a fuzzy cloud match is not enough"
        );
    }
}
