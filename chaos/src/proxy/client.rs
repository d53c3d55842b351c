//! The one client of the proxy's control API (`proxy/api.rs`): the nemesis,
//! the runner's scraper and the terminal commands all steer a proxy through
//! it, whether the proxy runs in this process, as a detached local process,
//! or in a container, so every platform shares one way to cut links.

use super::{DirectedPair, FaultSpec, PartitionShape, ProxyStats};
use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A proxy's control API at `url`, with its bearer token.
#[derive(Clone, Debug)]
pub struct ProxyClient {
    http: reqwest::Client,
    url: String,
    token: String,
}

/// A body of the API: the fault or shape, and its optional lease and name.
#[derive(Serialize)]
struct Body<'a, T: Serialize> {
    #[serde(flatten)]
    spec: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// The answer of `POST /partition`.
#[derive(Clone, Debug, Deserialize)]
pub struct Partitioned {
    /// Every directed pair the partition cuts.
    pub blocked: Vec<DirectedPair>,
    pub lease_ms: u64,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

impl ProxyClient {
    /// `url` is the API's base (`http://127.0.0.1:7300`).
    pub fn new(http: reqwest::Client, url: impl Into<String>, token: impl Into<String>) -> Self {
        ProxyClient {
            http,
            url: url.into().trim_end_matches('/').to_string(),
            token: token.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = req
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .with_context(|| format!("the proxy at {} does not answer", self.url))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            let why = serde_json::from_str::<ErrorBody>(&text)
                .map(|e| e.error)
                .unwrap_or(text);
            bail!("the proxy refused ({status}): {why}");
        }
        serde_json::from_str(&text)
            .with_context(|| format!("the proxy answered something unexpected: {text}"))
    }

    /// Sets the faults named `name` on the link `from` -> `to`.
    pub async fn set_faults(
        &self,
        name: Option<&str>,
        from: &str,
        to: &str,
        spec: &FaultSpec,
        lease: Option<Duration>,
    ) -> anyhow::Result<()> {
        let body = Body {
            spec,
            lease_ms: lease.map(|l| l.as_millis() as u64),
            name,
        };
        let url = format!("{}/links/{from}/{to}/faults", self.url);
        self.send::<serde_json::Value>(self.http.put(url).json(&body))
            .await?;
        Ok(())
    }

    /// Removes the faults named `name` (all, without a name) of a link.
    pub async fn clear_faults(
        &self,
        name: Option<&str>,
        from: &str,
        to: &str,
    ) -> anyhow::Result<()> {
        let url = format!("{}/links/{from}/{to}/faults{}", self.url, name_query(name));
        self.send::<serde_json::Value>(self.http.delete(url))
            .await?;
        Ok(())
    }

    /// Partitions the cluster as `shape`, under `name`.
    pub async fn partition(
        &self,
        name: Option<&str>,
        shape: &PartitionShape,
        lease: Option<Duration>,
    ) -> anyhow::Result<Partitioned> {
        let body = Body {
            spec: shape,
            lease_ms: lease.map(|l| l.as_millis() as u64),
            name,
        };
        self.send(
            self.http
                .post(format!("{}/partition", self.url))
                .json(&body),
        )
        .await
    }

    /// Heals the partition named `name` (all, without a name).
    pub async fn heal_partition(&self, name: Option<&str>) -> anyhow::Result<()> {
        let url = format!("{}/partition{}", self.url, name_query(name));
        self.send::<serde_json::Value>(self.http.delete(url))
            .await?;
        Ok(())
    }

    /// Heals every fault and partition.
    pub async fn heal_all(&self) -> anyhow::Result<()> {
        self.send::<serde_json::Value>(self.http.delete(format!("{}/faults", self.url)))
            .await?;
        Ok(())
    }

    /// Links, live faults, partitions and counters.
    pub async fn links(&self) -> anyhow::Result<ProxyStats> {
        self.send(self.http.get(format!("{}/links", self.url)))
            .await
    }

    /// The proxy's metrics in the Prometheus text format.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let resp = self
            .http
            .get(format!("{}/metrics", self.url))
            .timeout(Duration::from_millis(800))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("the proxy's /metrics answered {}", resp.status());
        }
        Ok(resp.text().await?)
    }
}

/// `?name=N` with `N` percent-encoded, or nothing without a name.
fn name_query(name: Option<&str>) -> String {
    let Some(name) = name else {
        return String::new();
    };
    let mut q = String::from("?name=");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            q.push(char::from(b));
        } else {
            q.push_str(&format!("%{b:02X}"));
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_percent_encoded_in_the_query() {
        assert_eq!(name_query(None), "");
        assert_eq!(name_query(Some("nemesis-3")), "?name=nemesis-3");
        assert_eq!(name_query(Some("a b&c")), "?name=a%20b%26c");
    }
}
