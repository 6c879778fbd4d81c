//! `DescribeInstances` as a listing: one page of instances matching server-side
//! [`Filter`]s (`instance-name`, `tag:<key>`, `instance-state`, `zone`), with `Offset`,
//! `Limit` (at most [`MAX_LIMIT`]) and the answer's `TotalCount`. Spends no URL; each
//! page is one call through the API limiter of its own action. Walking the pages and
//! matching names locally is the discovery's business, not this file's.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::{CloudClient, Error};

/// The most instances one `DescribeInstances` page may ask for (the cloud refuses more
/// with `InvalidParameterValue`).
pub const MAX_LIMIT: u32 = 100;

/// One server-side filter: an instance passes when its field equals one of `values`
/// (the values of one filter are OR'd; several filters are AND'd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// `instance-name`, `tag:<key>`, `instance-state`, `zone`, …
    pub name: String,
    /// The accepted values.
    pub values: Vec<String>,
}

/// One instance of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedInstance {
    /// `InstanceId`.
    pub id: String,
    /// `InstanceName` (control characters removed).
    pub name: String,
    /// `InstanceState` (`RUNNING`, `STOPPED`, …).
    pub state: String,
    /// `Placement.Zone` (CVM) or `Zone` (Lighthouse); empty when the answer has none.
    pub zone: String,
    /// `Tags`, key → value.
    pub tags: BTreeMap<String, String>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancePage {
    /// `TotalCount`: how many instances match the filters in all.
    pub total: u64,
    /// This page's instances (at most the limit asked for).
    pub instances: Vec<ListedInstance>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(rename = "InstanceId")]
    id: String,
    #[serde(rename = "InstanceName", default)]
    name: String,
    #[serde(rename = "InstanceState", default)]
    state: String,
    #[serde(rename = "Placement", default)]
    placement: Option<Placement>,
    #[serde(rename = "Zone", default)]
    zone: Option<String>,
    #[serde(rename = "Tags", default)]
    tags: Option<Vec<Tag>>,
}

#[derive(Deserialize)]
struct Placement {
    #[serde(rename = "Zone", default)]
    zone: Option<String>,
}

#[derive(Deserialize)]
struct Tag {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value", default)]
    value: String,
}

/// Text from the cloud that ends up in pages, logs and JSON: no control characters.
fn printable(s: String) -> String {
    if s.chars().any(char::is_control) {
        s.chars().filter(|c| !c.is_control()).collect()
    } else {
        s
    }
}

impl CloudClient {
    /// One page of `DescribeInstances` in `region`: the instances passing every filter,
    /// from `offset`, at most `limit` (1 to [`MAX_LIMIT`]; larger is clamped). Mints
    /// nothing; retried by error class like every call that mints nothing.
    ///
    /// # Errors
    /// The classified [`Error`]; [`Error::Parse`] when the answer has no `TotalCount`
    /// or an unreadable `InstanceSet`.
    pub async fn list_instances(
        &self,
        region: &str,
        filters: &[Filter],
        offset: u64,
        limit: u32,
    ) -> Result<InstancePage, Error> {
        let mut body = serde_json::json!({
            "Offset": offset,
            "Limit": limit.clamp(1, MAX_LIMIT),
        });
        if !filters.is_empty() {
            body["Filters"] = filters
                .iter()
                .map(|f| serde_json::json!({ "Name": f.name, "Values": f.values }))
                .collect();
        }
        let resp = self
            .call("DescribeInstances", region, body.to_string().into_bytes())
            .await?;
        let parse = |cause: String| Error::Parse {
            host: self.host_for(region),
            cause,
        };
        let total = resp
            .get("TotalCount")
            .and_then(Value::as_u64)
            .ok_or_else(|| parse("no TotalCount in Response".into()))?;
        let items: Vec<Item> = match resp.get("InstanceSet") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => {
                serde_json::from_value(v.clone()).map_err(|e| parse(format!("InstanceSet: {e}")))?
            }
        };
        let instances = items
            .into_iter()
            .map(|i| ListedInstance {
                id: i.id,
                name: printable(i.name),
                state: printable(i.state),
                zone: printable(
                    i.placement
                        .and_then(|p| p.zone)
                        .or(i.zone)
                        .unwrap_or_default(),
                ),
                tags: i
                    .tags
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| (printable(t.key), printable(t.value)))
                    .collect(),
            })
            .collect();
        Ok(InstancePage { total, instances })
    }
}
