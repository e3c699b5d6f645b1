//! Wire types of Balsa, and nothing else.
//!
//! This crate owns the protobuf messages and gRPC service definitions that
//! cross a process boundary. It depends on no other Balsa crate, so clients
//! and tools can use it alone.
//!
//! - [`logproto`]: Loki's push API (`logproto.PushRequest`, the `Pusher`
//!   service), wire-compatible with Grafana Loki and its clients.
//! - [`otlp`]: OpenTelemetry's logs export request (OTLP/HTTP protobuf),
//!   received at `/otlp/v1/logs`.
//! - [`cluster`]: Balsa's internal services between the nodes of a cluster:
//!   the batched Raft transport, the ingester's partition RPCs and the
//!   controller that owns the ring.
//!
//! ```
//! use balsa_proto::logproto::{EntryAdapter, PushRequest, StreamAdapter};
//! use prost::Message;
//!
//! let req = PushRequest {
//!     streams: vec![StreamAdapter {
//!         labels: r#"{job="api"}"#.into(),
//!         entries: vec![EntryAdapter {
//!             timestamp: Some(prost_types::Timestamp { seconds: 1, nanos: 0 }),
//!             line: b"hello".to_vec(),
//!             structured_metadata: vec![],
//!         }],
//!         hash: 0,
//!     }],
//! };
//! let bytes = req.encode_to_vec();
//! assert_eq!(PushRequest::decode(bytes.as_slice()).unwrap(), req);
//! ```

/// Loki's push API (package `logproto`).
pub mod logproto {
    tonic::include_proto!("logproto");
}

/// OTLP logs export messages (package `otlp`, wire-compatible with
/// `opentelemetry.proto.collector.logs.v1`).
pub mod otlp {
    tonic::include_proto!("otlp");
}

/// Balsa's internal services (package `balsa.cluster`).
pub mod cluster {
    tonic::include_proto!("balsa.cluster");
}
