//! The S3 backend of [`ObjectStore`], with `aws-sdk-s3`: AWS S3 or any
//! S3-compatible store (MinIO, Ceph RGW, R2, moto) through a custom endpoint
//! and path-style addressing. Credentials come from the configuration or,
//! when absent, from the standard AWS chain (environment, profile, IMDS).
//!
//! What is durable when: `put` returns after S3 answered the PutObject with
//! success, i.e. the object is stored whole.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

use crate::object_store::{validate_key, BoxFut, ObjectError, ObjectStore};

/// Where and how to reach the bucket.
#[derive(Clone, Debug, Default)]
pub struct S3Config {
    pub bucket: String,
    /// Custom endpoint, e.g. `http://127.0.0.1:9000`; AWS when `None`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// `http://host/bucket/key` instead of `http://bucket.host/key`.
    pub force_path_style: bool,
}

/// Objects in an S3 bucket.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    describe: String,
}

fn backend(key: &str, e: impl std::error::Error) -> ObjectError {
    ObjectError::Backend { key: key.to_string(), message: DisplayErrorContext(e).to_string() }
}

impl S3Store {
    /// Builds the client (reads the credential chain; sends nothing yet).
    pub async fn new(cfg: &S3Config) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        loader = loader.region(Region::new(cfg.region.clone().unwrap_or_else(|| "us-east-1".to_string())));
        if let (Some(ak), Some(sk)) = (&cfg.access_key_id, &cfg.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(ak, sk, None, None, "balsa-config"));
        }
        let sdk = loader.load().await;
        let mut b = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(cfg.force_path_style);
        if let Some(ep) = &cfg.endpoint {
            b = b.endpoint_url(ep);
        }
        let describe = format!("s3://{}{}", cfg.bucket, cfg.endpoint.as_deref().map(|e| format!(" at {e}")).unwrap_or_default());
        Self { client: Client::from_conf(b.build()), bucket: cfg.bucket.clone(), describe }
    }
}

/// Where a listing goes on: the continuation token of the next page, or
/// `None` at the end. Some S3-compatible stores omit `IsTruncated`; a token
/// alone then means more pages (stopping there would hide objects), and a
/// listing that says it is truncated without a token is an error.
fn next_page(is_truncated: Option<bool>, token: Option<&str>) -> Result<Option<String>, String> {
    match (is_truncated, token) {
        (Some(false), _) => Ok(None),
        (_, Some(t)) if !t.is_empty() => Ok(Some(t.to_string())),
        (Some(true), _) => Err("the listing is truncated but has no continuation token".into()),
        (None, _) => Ok(None),
    }
}

impl ObjectStore for S3Store {
    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFut<'a, Result<(), ObjectError>> {
        Box::pin(async move {
            validate_key(key)?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(ByteStream::from(bytes))
                .send()
                .await
                .map_err(|e| backend(key, e))?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFut<'a, Result<Vec<u8>, ObjectError>> {
        Box::pin(async move {
            validate_key(key)?;
            let resp = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
                Ok(r) => r,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                    return Err(ObjectError::NotFound(key.to_string()))
                }
                Err(e) => return Err(backend(key, e)),
            };
            let data = resp.body.collect().await.map_err(|e| backend(key, e))?;
            Ok(data.into_bytes().to_vec())
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFut<'a, Result<Vec<String>, ObjectError>> {
        Box::pin(async move {
            let mut keys = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let resp = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(|e| backend(prefix, e))?;
                keys.extend(resp.contents().iter().filter_map(|o| o.key().map(str::to_string)));
                match next_page(resp.is_truncated(), resp.next_continuation_token()) {
                    Ok(Some(t)) => token = Some(t),
                    Ok(None) => break,
                    Err(problem) => return Err(ObjectError::Backend { key: prefix.to_string(), message: problem }),
                }
            }
            keys.sort();
            Ok(keys)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFut<'a, Result<(), ObjectError>> {
        Box::pin(async move {
            validate_key(key)?;
            self.client.delete_object().bucket(&self.bucket).key(key).send().await.map_err(|e| backend(key, e))?;
            Ok(())
        })
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    struct Moto(Child);
    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Starts `moto_server` (PyPI `moto[server]`) on a free 127.0.0.1 port.
    fn moto() -> Option<(Moto, String)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = match Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                assert!(std::env::var_os("CI").is_none(), "CI must provide moto_server: {e}");
                eprintln!("skipped: moto_server not installed ({e}); pip install 'moto[server]'");
                return None;
            }
        };
        let guard = Moto(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some((guard, format!("http://127.0.0.1:{port}")))
    }

    #[test]
    fn listing_follows_tokens_even_without_is_truncated() {
        assert_eq!(next_page(None, Some("t2")), Ok(Some("t2".to_string())), "IsTruncated omitted");
        assert_eq!(next_page(Some(true), Some("t2")), Ok(Some("t2".to_string())));
        assert_eq!(next_page(Some(false), Some("t2")), Ok(None));
        assert_eq!(next_page(None, None), Ok(None));
        assert!(next_page(Some(true), None).is_err(), "truncated without a token must not end the listing silently");
    }

    #[tokio::test]
    async fn s3_passes_the_suite_against_a_real_s3_server() {
        let Some((_moto, endpoint)) = moto() else { return };
        let cfg = S3Config {
            bucket: "balsa-suite".into(),
            endpoint: Some(endpoint),
            region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            force_path_style: true,
        };
        let store = S3Store::new(&cfg).await;
        store.client.create_bucket().bucket("balsa-suite").send().await.expect("create bucket");
        crate::object_store::suite::run(&store).await;
        let missing = S3Store { bucket: "no-such-bucket".into(), ..store.clone() };
        assert!(matches!(missing.put("t/x", vec![1]).await, Err(ObjectError::Backend { .. })));
    }
}
