//! The bucket's layout: every object key Balsa writes, built and read in
//! this one module so that the flush loop, the querier, the compactor and
//! the delete log agree on it.
//!
//! | key | what | written by |
//! |---|---|---|
//! | `chunks/<tenant>/<fp>/<from>-<through>-<xxh3-128>` | a chunk ([`crate::chunk`]) | the flush loop; the compactor when it rewrites one for a delete |
//! | `index/<tenant>/<day>/<partition>-<seq>` | an index segment shipped by a partition | the flush loop |
//! | `index/<tenant>/<day>/c-<crc32c>` | an index segment merged by the compactor | the compactor |
//! | `deletes/<tenant>/<id>` | a delete request | the delete API |
//! | `compactor/tombstones/<tenant>/<due>-<crc32c>` | chunk keys leaving the index, deleted once `<due>` (Unix ns, hex) has passed | the compactor |
//!
//! `<fp>` is the stream's fingerprint (xxh3-64 of tenant, a zero byte and
//! the labels in normal form), `<from>`/`<through>` the first and last
//! timestamps in hex, `<day>` the days since 1970 the segment covers. A
//! chunk's key ends in the hash of its bytes, so uploading the same chunk
//! again (a retried flush) writes the same object. Tenant names never hold
//! `/` (they are validated as Loki's org IDs).

/// The key of a chunk of `tenant`'s stream `labels` (in normal form),
/// holding entries from `from` through `through` (Unix ns), encoded as
/// `bytes`.
pub fn chunk(tenant: &str, labels: &str, from: i64, through: i64, bytes: &[u8]) -> String {
    let mut fp_input = Vec::with_capacity(tenant.len() + labels.len() + 1);
    fp_input.extend_from_slice(tenant.as_bytes());
    fp_input.push(0);
    fp_input.extend_from_slice(labels.as_bytes());
    let fp = xxhash_rust::xxh3::xxh3_64(&fp_input);
    format!("chunks/{tenant}/{fp:016x}/{from:x}-{through:x}-{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

/// Where every index segment lives.
pub const INDEX_ROOT: &str = "index/";

/// Where a tenant's index segments live.
pub fn index_prefix(tenant: &str) -> String {
    format!("{INDEX_ROOT}{tenant}/")
}

/// The key of the segment partition `partition` ships for `tenant`'s `day`,
/// covering its log through `through_seq`.
pub fn shipped_segment(tenant: &str, day: i64, partition: u32, through_seq: u64) -> String {
    format!("{}{day}/{partition}-{through_seq:016x}", index_prefix(tenant))
}

/// The key of a segment the compactor merged for `tenant`'s `day`, named
/// by the checksum of its `bytes` (a rerun writes the same key).
pub fn compacted_segment(tenant: &str, day: i64, bytes: &[u8]) -> String {
    format!("{}{day}/c-{:08x}", index_prefix(tenant), crc32c::crc32c(bytes))
}

/// The tenant and day an index segment's key is filed under.
pub fn segment_tenant_day(key: &str) -> Option<(&str, i64)> {
    let mut parts = key.strip_prefix(INDEX_ROOT)?.split('/');
    let tenant = parts.next().filter(|t| !t.is_empty())?;
    let day = parts.next()?.parse().ok()?;
    Some((tenant, day))
}

/// Where every delete request lives.
pub const DELETES_ROOT: &str = "deletes/";

/// Where a tenant's delete requests live.
pub fn deletes_prefix(tenant: &str) -> String {
    format!("{DELETES_ROOT}{tenant}/")
}

/// The key of `tenant`'s delete request `id`.
pub fn delete_request(tenant: &str, id: &str) -> String {
    format!("{}{id}", deletes_prefix(tenant))
}

/// Where every tombstone lives (outside `chunks/` and `index/`).
pub const TOMBSTONES_ROOT: &str = "compactor/tombstones/";

/// The key of a tombstone of `tenant` listing chunk keys (`body`) to
/// delete once `due` (Unix ns) has passed.
pub fn tombstone(tenant: &str, due: i64, body: &[u8]) -> String {
    format!("{TOMBSTONES_ROOT}{tenant}/{due:016x}-{:08x}", crc32c::crc32c(body))
}

/// The tenant and due time (Unix ns) of a tombstone's key.
pub fn tombstone_tenant_due(key: &str) -> Option<(&str, i64)> {
    let (tenant, name) = key.strip_prefix(TOMBSTONES_ROOT)?.split_once('/')?;
    let due = i64::from_str_radix(name.split('-').next()?, 16).ok()?;
    Some((tenant, due))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_and_name_their_contents() {
        let seg = shipped_segment("t", 19_000, 3, 42);
        assert_eq!(seg, "index/t/19000/3-000000000000002a");
        assert_eq!(segment_tenant_day(&seg), Some(("t", 19_000)));
        let merged = compacted_segment("t", 19_000, b"x");
        assert!(merged.starts_with("index/t/19000/c-"), "{merged}");
        assert_eq!(segment_tenant_day(&merged), Some(("t", 19_000)));
        assert_eq!(segment_tenant_day("index/t/notaday/x"), None);
        assert_eq!(segment_tenant_day("chunks/t/1/x"), None);
        let a = chunk("t", r#"{a="1"}"#, 10, 20, b"bytes");
        assert!(a.starts_with("chunks/t/") && a.contains("/a-14-"), "{a}");
        assert_eq!(a, chunk("t", r#"{a="1"}"#, 10, 20, b"bytes"), "the same chunk, the same key (retries overwrite)");
        assert_ne!(a, chunk("u", r#"{a="1"}"#, 10, 20, b"bytes"), "tenants never share a key");
        assert_ne!(a, chunk("t", r#"{a="1"}"#, 10, 20, b"other"), "other bytes, another key");
        assert_eq!(delete_request("t", "abc"), "deletes/t/abc");
        let tomb = tombstone("t", 0x1234, b"chunks/t/x");
        assert_eq!(tombstone_tenant_due(&tomb), Some(("t", 0x1234)));
        assert_eq!(tombstone_tenant_due("compactor/tombstones/t/zz-1"), None);
    }
}
