//! The authorization server's signing keys (JWKS), cached.
//!
//! Keys are fetched at start and every refresh interval. A token whose `kid`
//! is unknown triggers one extra fetch (keys rotate), but at most one at a
//! time and at most once per minimum interval, so a stream of bad tokens
//! cannot hammer the authorization server. A failed fetch keeps the last good
//! keys, so an outage of the JWKS endpoint does not lock callers out.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dynamic_mcp_common::periodic::{self, Ticks};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use url::Url;

/// A JWKS larger than this is refused.
const MAX_JWKS_BYTES: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot set up an HTTP client for the JWKS: {0}")]
    Client(reqwest::Error),
    #[error("cannot fetch the JWKS from {url}: {source}")]
    Fetch { url: Url, source: reqwest::Error },
    #[error("the JWKS at {url} answered HTTP {status}")]
    Status { url: Url, status: reqwest::StatusCode },
    #[error("the JWKS at {url} is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge { url: Url },
    #[error("the JWKS at {url} is not a JSON key set: {reason}")]
    NotAKeySet { url: Url, reason: String },
}

/// The cached key set. Cheap to clone.
#[derive(Clone)]
pub struct JwksCache {
    inner: Arc<Inner>,
}

struct Inner {
    url: Url,
    http: reqwest::Client,
    keys: RwLock<Arc<JwkSet>>,
    /// When the last fetch for an unknown kid started; the lock makes those
    /// fetches single-flight.
    last_refetch: Mutex<Option<Instant>>,
    min_refetch: Duration,
}

impl JwksCache {
    pub fn new(url: Url, min_refetch: Duration) -> Result<Self, JwksError> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(JwksError::Client)?;
        Ok(Self {
            inner: Arc::new(Inner {
                url,
                http,
                keys: RwLock::new(Arc::new(JwkSet { keys: Vec::new() })),
                last_refetch: Mutex::new(None),
                min_refetch,
            }),
        })
    }

    /// The signing key `kid`, fetching the set again if it is unknown (rate-limited).
    pub async fn find(&self, kid: &str) -> Option<Jwk> {
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        let mut last = self.inner.last_refetch.lock().await;
        // Another request may have fetched it while we waited.
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        if last.is_some_and(|at| at.elapsed() < self.inner.min_refetch) {
            return None;
        }
        *last = Some(Instant::now());
        if let Err(e) = self.refresh().await {
            tracing::warn!("{e}; keeping the cached keys");
        }
        drop(last);
        self.cached(kid)
    }

    fn cached(&self, kid: &str) -> Option<Jwk> {
        let keys = self
            .inner
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.find(kid).cloned()
    }

    /// Fetches the set and replaces the cached one; on failure the cache stays.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let keys = self.fetch().await?;
        let count = keys.keys.len();
        *self
            .inner
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
        tracing::debug!(keys = count, url = %self.inner.url, "JWKS refreshed");
        Ok(count)
    }

    async fn fetch(&self) -> Result<JwkSet, JwksError> {
        let url = &self.inner.url;
        let fetch_err = |source| JwksError::Fetch {
            url: url.clone(),
            source,
        };
        let response = self.inner.http.get(url.clone()).send().await.map_err(fetch_err)?;
        if !response.status().is_success() {
            return Err(JwksError::Status {
                url: url.clone(),
                status: response.status(),
            });
        }
        if response.content_length().is_some_and(|n| n > MAX_JWKS_BYTES as u64) {
            return Err(JwksError::TooLarge { url: url.clone() });
        }
        let body = response.bytes().await.map_err(fetch_err)?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge { url: url.clone() });
        }
        parse_key_set(&body).map_err(|reason| JwksError::NotAKeySet {
            url: url.clone(),
            reason,
        })
    }

    /// Refreshes every `every` until `stop`.
    pub fn spawn_refresher(&self, every: Duration, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let cache = self.clone();
        tokio::spawn(periodic::every(Ticks::new(every, stop), move || {
            let cache = cache.clone();
            async move {
                if let Err(e) = cache.refresh().await {
                    tracing::warn!("{e}; keeping the cached keys");
                }
            }
        }))
    }
}

/// The signing keys of a JWKS document. Entries this library cannot read or
/// meant for encryption are skipped rather than failing the whole set.
fn parse_key_set(body: &[u8]) -> Result<JwkSet, String> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let raw: RawSet = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let keys = raw
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter(|key| !matches!(key.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .collect();
    Ok(JwkSet { keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_and_encryption_keys_are_skipped() {
        let body = br#"{"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "sig", "use": "sig",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            "not a key"
        ]}"#;
        let set = parse_key_set(body).unwrap();
        let kids: Vec<_> = set.keys.iter().filter_map(|k| k.common.key_id.as_deref()).collect();
        assert_eq!(kids, ["sig"]);
        assert!(parse_key_set(b"{}").is_err());
        assert!(parse_key_set(b"<html>").is_err());
    }

    /// A JWKS endpoint on a local port serving one signing key, `kid`,
    /// whatever it is set to; it counts the fetches.
    struct KeyServer {
        url: Url,
        kid: Arc<std::sync::Mutex<String>>,
        fetches: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl KeyServer {
        async fn start(kid: &str) -> Self {
            use std::sync::atomic::Ordering;
            let kid = Arc::new(std::sync::Mutex::new(kid.to_owned()));
            let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let (served, counted) = (Arc::clone(&kid), Arc::clone(&fetches));
            let app = axum::Router::new().route(
                "/jwks",
                axum::routing::get(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let kid = served.lock().unwrap().clone();
                    async move {
                        axum::Json(
                            serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}),
                        )
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/jwks", listener.local_addr().unwrap())
                .parse()
                .unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            Self { url, kid, fetches }
        }

        fn fetches(&self) -> usize {
            self.fetches.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    /// The clock is paused while the refresher waits out its hour, and runs
    /// (briefly) while it fetches over a real socket.
    #[tokio::test]
    async fn the_refresher_fetches_rotated_keys_once_per_period_until_stopped() {
        let server = KeyServer::start("old").await;
        let cache = JwksCache::new(server.url.clone(), Duration::from_secs(60)).unwrap();
        assert_eq!(cache.refresh().await.unwrap(), 1);
        *server.kid.lock().unwrap() = "rotated".into();

        let every = Duration::from_secs(3600);
        let stop = CancellationToken::new();
        tokio::time::pause();
        let refresher = cache.spawn_refresher(every, stop.clone());
        tokio::task::yield_now().await;
        tokio::time::advance(every - Duration::from_secs(1)).await;
        assert_eq!(server.fetches(), 1, "refreshed before its period was over");
        assert!(cache.cached("rotated").is_none());

        tokio::time::advance(Duration::from_secs(1)).await;
        tokio::time::resume();
        let deadline = Instant::now() + Duration::from_secs(10);
        while cache.cached("rotated").is_none() {
            assert!(Instant::now() < deadline, "the rotated key never arrived");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(server.fetches(), 2);
        assert!(cache.cached("old").is_none(), "the new set replaces the old one");

        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), refresher)
            .await
            .expect("the refresher outlived its stop")
            .unwrap();
    }
}
