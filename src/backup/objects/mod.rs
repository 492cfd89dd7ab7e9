//! Object storage targets (spec/objects.md): a backup under `s3://bucket/prefix`.
//!
//! Owns: the URL of an object target (OBJ-1), the names under its prefix (OBJ-3), the lease
//! (OBJ-5), the pointer written last (OBJ-7), uploads whose memory is bounded whatever the
//! object's size (OBJ-6), downloading a generation while checking it against its manifest
//! (OBJ-8), and turning what the object store answers into one sentence an operator can act on
//! (OBJ-10).
//! Must not touch: the network of the backup protocol, or the local store files (the client and
//! the restore write those). Object stores only through `Env::objects`, so simulations run this
//! code against in-memory stores.
//!
//! Layout: this file (URL, errors), `target.rs` (lease, pointer, generations), `transfer.rs`
//! (uploads and the download of a generation).

mod target;
mod transfer;

pub use target::{Lease, ObjectTarget, LEASE_FILE, LEASE_TTL, MAX_SEGMENTS, MIN_SEGMENT_BOUND};
pub use transfer::{
    download_generation, fetch_generation, last_state, live_generation, put_object,
    quick_check_objects, stage, under_lease, Fetched, Upload, PART_SIZE,
};

use object_store::path::Path as ObjectPath;

/// An object store target or source, `s3://bucket[/prefix]` (OBJ-1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectUrl {
    pub bucket: String,
    /// Without leading or trailing `/`; empty for the bucket's top level.
    pub prefix: String,
}

/// The scheme of the only object store built so far.
const SCHEME: &str = "s3://";
/// The longest prefix accepted, in bytes.
const MAX_PREFIX: usize = 512;

impl ObjectUrl {
    /// The object store `path` names, when it is spelled as a URL (OBJ-1); `None` for a local
    /// path.
    pub fn of_path(path: &std::path::Path) -> Result<Option<ObjectUrl>, ObjectsError> {
        match path.to_str() {
            Some(text) if ObjectUrl::is_url(text) => {
                ObjectUrl::parse(text)
                    .map(Some)
                    .map_err(|why| ObjectsError::BadUrl {
                        url: text.to_string(),
                        why,
                    })
            }
            _ => Ok(None),
        }
    }

    /// Whether `text` is meant as a URL rather than a local path: it has a scheme.
    pub fn is_url(text: &str) -> bool {
        text.split_once("://")
            .is_some_and(|(scheme, _)| !scheme.is_empty() && !scheme.contains('/'))
    }

    /// Parses `s3://bucket[/prefix]`; the error says what is wrong, in a clause.
    pub fn parse(text: &str) -> Result<ObjectUrl, String> {
        let Some(rest) = text.strip_prefix(SCHEME) else {
            let scheme = text.split_once("://").map_or(text, |(s, _)| s);
            return Err(format!(
                "{scheme}:// is not a supported object store; only s3:// (S3 or an S3-compatible server) is"
            ));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !bucket_ok {
            return Err(format!(
                "{bucket:?} is not a bucket name (3 to 63 lower-case letters, digits, '.' and '-')"
            ));
        }
        let prefix = prefix.trim_end_matches('/');
        if prefix.len() > MAX_PREFIX {
            return Err(format!(
                "the prefix is {} bytes, more than the {MAX_PREFIX} allowed",
                prefix.len()
            ));
        }
        if !prefix.is_empty()
            && prefix
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == ".." || s.chars().any(char::is_control))
        {
            return Err(format!(
                "{prefix:?} is not a prefix (segments separated by single '/', none empty, '.' or '..')"
            ));
        }
        Ok(ObjectUrl {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The object `name` (a path relative to the prefix, `/`-separated).
    pub fn key(&self, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }

    /// The prefix as a path, for listing (`None` for the bucket's top level).
    pub fn root(&self) -> Option<ObjectPath> {
        (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()))
    }
}

impl std::fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "{SCHEME}{}", self.bucket)
        } else {
            write!(f, "{SCHEME}{}/{}", self.bucket, self.prefix)
        }
    }
}

/// Why an object target cannot be used (OBJ-10); each is one sentence.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    /// A URL that names no object store this tool can use (OBJ-1): a usage error.
    #[error("{url}: {why}")]
    BadUrl { url: String, why: String },
    #[error("the bucket {bucket} does not exist (check the bucket name and AWS_ENDPOINT_URL)")]
    BucketMissing { bucket: String },
    #[error("the object store refused the credentials for {url} (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY): {detail}")]
    CredentialsRefused { url: String, detail: String },
    #[error("cannot reach the object store for {url} (check AWS_ENDPOINT_URL and the network): {detail}")]
    Unreachable { url: String, detail: String },
    #[error("{url} is in use by another backup run: its lease expires at {expires}")]
    Locked { url: String, expires: String },
    #[error("{url} was taken over by another run while this one held it (its lease changed); this run stopped")]
    LeaseLost { url: String },
    #[error("{url} is not a valid backup: {why}")]
    NotABackup { url: String, why: String },
    /// Objects of the live generation do not match its manifest (OBJ-8, MF-4).
    #[error("the backup in {url} is damaged ({count} finding(s) against its manifest, the first: {first}); nothing was restored")]
    Damaged {
        url: String,
        count: usize,
        first: String,
    },
    #[error("{url}'s pointer or manifest was changed by another writer during this run; this run's work was not made live")]
    PointerChanged { url: String },
    #[error("the object store failed {doing} {url}: {detail}")]
    Failed {
        url: String,
        doing: String,
        detail: String,
    },
}

impl ObjectsError {
    /// The exit code (OBJ-10, BK-40): 3 for a target that holds no valid backup, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            ObjectsError::BadUrl { .. } => 2,
            ObjectsError::NotABackup { .. } | ObjectsError::Damaged { .. } => 3,
            _ => 1,
        }
    }

    /// An upload of the object `name` that the store failed (OBJ-10).
    pub fn uploading(url: &ObjectUrl, name: &str, e: &object_store::Error) -> ObjectsError {
        ObjectsError::from_store(url, &format!("uploading {name} to"), e)
    }

    /// What the object store answered, as the sentence an operator can act on (OBJ-10).
    pub fn from_store(url: &ObjectUrl, doing: &str, e: &object_store::Error) -> ObjectsError {
        let text = chain(e);
        let url_text = url.to_string();
        let detail = short(&text);
        if text.contains("NoSuchBucket") {
            ObjectsError::BucketMissing {
                bucket: url.bucket.clone(),
            }
        } else if matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ) || [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "403 Forbidden",
        ]
        .iter()
        .any(|code| text.contains(code))
        {
            ObjectsError::CredentialsRefused {
                url: url_text,
                detail,
            }
        } else if unreachable(e) {
            ObjectsError::Unreachable {
                url: url_text,
                detail,
            }
        } else {
            ObjectsError::Failed {
                url: url_text,
                doing: doing.to_string(),
                detail,
            }
        }
    }
}

/// Whether the request never reached the store: a connection refused or a timeout.
fn unreachable(e: &object_store::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(http) = s.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind;
            return matches!(http.kind(), HttpErrorKind::Connect | HttpErrorKind::Timeout);
        }
        source = s.source();
    }
    false
}

/// An error and its sources, one text.
fn chain(e: &object_store::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// The store's answer cut to one printable line of at most 300 characters.
fn short(text: &str) -> String {
    let line: String = crate::units::printable(&text.replace(['\n', '\r'], " "));
    match line.char_indices().nth(300) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line,
    }
}

/// Object store targets built in memory for the unit tests of this module's files.
#[cfg(test)]
mod testing {
    use std::sync::Arc;

    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

    use super::{ObjectTarget, ObjectUrl, ObjectsError};
    use crate::backup::manifest::{BlockHasher, Manifest, Verification, BLOCK_SIZE, MANIFEST_FILE};
    use crate::digest::Digest;
    use crate::store::format::FormatVersion;
    use crate::store::layout::POINTER_FILE;
    use crate::store::meta::StoreId;

    /// `s3://bucket/db` in memory, its live generation-1 holding `files` (name, bytes) and a
    /// manifest that lists them, with their blocks' hashes, at `last_tx` with `digest`.
    pub async fn target_with(
        files: &[(String, Vec<u8>)],
        last_tx: u64,
        digest: Digest,
    ) -> Result<ObjectTarget, ObjectsError> {
        let url = ObjectUrl::parse("s3://bucket/db").expect("a URL");
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let put = |name: String, bytes: Vec<u8>| {
            let (store, key) = (store.clone(), url.key(&name));
            async move { store.put(&key, PutPayload::from(bytes)).await.expect("put") }
        };
        put(POINTER_FILE.to_string(), b"generation-1\n".to_vec()).await;
        let mut listed: Vec<&(String, Vec<u8>)> = files.iter().collect();
        listed.sort();
        let manifest = Manifest {
            block_size: BLOCK_SIZE,
            store_id: StoreId {
                created_millis: 1,
                random: 2,
            },
            format: FormatVersion(2),
            first_tx: 1,
            last_tx,
            digest,
            created_millis: 1,
            written_millis: 1,
            verification: Verification::Touched,
            last_full_verification: None,
            scrub_cursor: 0,
            scrubbed_since_full: 0,
            source: "db:6362".to_string(),
            tool_version: "test".to_string(),
            files: listed
                .iter()
                .map(|(name, bytes)| {
                    let mut hasher = BlockHasher::new(BLOCK_SIZE);
                    hasher.update(bytes);
                    hasher.finish(name)
                })
                .collect(),
            pending: Default::default(),
        };
        put(format!("generation-1/{MANIFEST_FILE}"), manifest.encode()).await;
        for (name, bytes) in files {
            put(format!("generation-1/{name}"), bytes.clone()).await;
        }
        ObjectTarget::read(store, &url).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obj_1_urls_are_parsed_and_bad_ones_named() {
        let url = ObjectUrl::parse("s3://my-bucket/backups/graph/").unwrap();
        assert_eq!(url.bucket, "my-bucket", "OBJ-1");
        assert_eq!(url.prefix, "backups/graph", "OBJ-1");
        assert_eq!(url.to_string(), "s3://my-bucket/backups/graph", "OBJ-1");
        assert_eq!(
            url.key("CURRENT").as_ref(),
            "backups/graph/CURRENT",
            "OBJ-1"
        );
        for good in ["s3://my.bucket-2/x", "s3://123", "s3://a.b", "s3://a-b"] {
            assert!(ObjectUrl::parse(good).is_ok(), "OBJ-1: {good}");
        }
        let top = ObjectUrl::parse("s3://abc").unwrap();
        assert_eq!(top.key("CURRENT").as_ref(), "CURRENT", "OBJ-1");
        assert!(top.root().is_none(), "OBJ-1");
        for (bad, why) in [
            ("gs://bucket/x", "gs:// is not a supported"),
            ("s3://ab/x", "not a bucket name"),
            ("s3://Bucket/x", "not a bucket name"),
            ("s3://buck_et/x", "not a bucket name"),
            (&format!("s3://{}", "b".repeat(64)), "not a bucket name"),
            ("s3://bucket/a//b", "not a prefix"),
            ("s3://bucket/a/../b", "not a prefix"),
        ] {
            let e = ObjectUrl::parse(bad).unwrap_err();
            assert!(e.contains(why), "OBJ-1: {bad}: {e}");
        }
        let longest = format!("s3://bucket/{}", "a".repeat(MAX_PREFIX));
        assert!(
            ObjectUrl::parse(&longest).is_ok(),
            "OBJ-1: {MAX_PREFIX} bytes"
        );
        let long = format!("s3://bucket/{}", "a".repeat(MAX_PREFIX + 1));
        assert!(
            ObjectUrl::parse(&long).unwrap_err().contains("more than"),
            "OBJ-1"
        );
        assert!(ObjectUrl::is_url("s3://b"), "OBJ-1");
        assert!(ObjectUrl::is_url("gs://b"), "OBJ-1");
        assert!(!ObjectUrl::is_url("/var/backups/x"), "OBJ-1");
        assert!(!ObjectUrl::is_url("dir/a://b"), "OBJ-1");
        // A bad URL is a usage error; a local path is not a URL.
        let bad = ObjectUrl::of_path(std::path::Path::new("gs://b/x")).unwrap_err();
        assert_eq!(bad.exit_code(), 2, "OBJ-1: {bad}");
        assert!(
            ObjectUrl::of_path(std::path::Path::new("/var/b"))
                .unwrap()
                .is_none(),
            "OBJ-1"
        );
    }

    // OBJ-10: what the store answered becomes the sentence an operator acts on, by the error's
    // kind or by the code in its text; anything else says what was being done.
    #[test]
    fn obj_10_store_errors_are_named_by_kind_or_code() {
        let url = ObjectUrl::parse("s3://bkt/p").unwrap();
        let generic = |text: &str| object_store::Error::Generic {
            store: "S3",
            source: text.to_string().into(),
        };
        let denied = object_store::Error::PermissionDenied {
            path: "p/x".to_string(),
            source: "no".into(),
        };
        let unauthenticated = object_store::Error::Unauthenticated {
            path: "p/x".to_string(),
            source: "no".into(),
        };
        for e in [&denied, &unauthenticated] {
            assert!(
                matches!(
                    ObjectsError::from_store(&url, "reading", e),
                    ObjectsError::CredentialsRefused { .. }
                ),
                "OBJ-10: {e}"
            );
        }
        for code in [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "403 Forbidden",
        ] {
            let e = ObjectsError::from_store(&url, "reading", &generic(&format!("answer: {code}")));
            assert!(
                matches!(e, ObjectsError::CredentialsRefused { .. }),
                "OBJ-10: {code}: {e}"
            );
            assert_eq!(e.exit_code(), 1, "OBJ-10");
        }
        let e = ObjectsError::from_store(&url, "reading", &generic("<Code>NoSuchBucket</Code>"));
        assert!(
            matches!(&e, ObjectsError::BucketMissing { bucket } if bucket == "bkt"),
            "OBJ-10: {e}"
        );
        let e = ObjectsError::from_store(&url, "reading CURRENT of", &generic("500 busy"));
        assert!(
            matches!(&e, ObjectsError::Failed { doing, .. } if doing == "reading CURRENT of"),
            "OBJ-10: {e}"
        );
        // The code may sit deep in the error's sources, below a message that does not repeat it.
        #[derive(Debug)]
        struct Wrapped(std::io::Error);
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the request failed")
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let deep = object_store::Error::Generic {
            store: "S3",
            source: Box::new(Wrapped(std::io::Error::other("InvalidAccessKeyId"))),
        };
        let e = ObjectsError::from_store(&url, "reading", &deep);
        assert!(
            matches!(&e, ObjectsError::CredentialsRefused { detail, .. }
                if detail.contains("the request failed: InvalidAccessKeyId")),
            "OBJ-10: {e}"
        );
        let long = generic(&format!("line one\nline two {}", "x".repeat(400)));
        let ObjectsError::Failed { detail, .. } = ObjectsError::from_store(&url, "x", &long) else {
            panic!("OBJ-10: a generic error is a failure");
        };
        assert!(
            !detail.contains('\n') && detail.ends_with("...") && detail.chars().count() == 303,
            "OBJ-10: one line of at most 300 characters: {detail}"
        );
    }
}
