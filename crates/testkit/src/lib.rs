//! Fixtures for Switchyard's integration tests, used as a dev-dependency only (`publish = false`).
//!
//! The fleet code coordinates replicas through etcd, and its failure handling (a member crashing, a
//! replica cut off from the cluster, a partition that heals) can only be trusted once it has run against
//! the real thing. This crate gives a test a real etcd cluster on loopback ([`EtcdCluster`]), a TCP relay
//! that can cut one client off from it without root or network namespaces ([`Relay`]), and a minimal
//! blocking HTTP client for etcd's JSON gateway ([`http`]). Everything here is std plus `libc`, so that
//! the fixtures add nothing to the build of the server itself.
//!
//! Tests that need etcd must skip, with a printed reason, where it is absent:
//!
//! ```no_run
//! use switchyard_testkit::EtcdCluster;
//!
//! if EtcdCluster::find_binary().is_none() {
//!     eprintln!("SKIPPED: etcd is not installed");
//!     return;
//! }
//! let cluster = EtcdCluster::start(3).expect("etcd cluster");
//! println!("{:?}", cluster.endpoints());
//! ```

pub mod etcd;
pub mod http;
pub mod relay;

pub use etcd::EtcdCluster;
pub use relay::{Relay, RelayMode};

use std::io;
use std::net::{Ipv4Addr, TcpListener};

/// A loopback TCP port that was free a moment ago: bound on 127.0.0.1:0, read, and released.
///
/// Another process can take it before the caller binds it; callers that start servers on it should
/// retry on "address already in use" (as [`EtcdCluster::start`] does).
///
/// # Panics
/// Where no loopback port can be bound at all.
pub fn free_port() -> u16 {
    let ports = free_ports(1).expect("bind a free port on 127.0.0.1");
    ports[0]
}

/// `n` distinct free loopback ports: all are held at once while they are picked, so none repeats.
pub(crate) fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..n).map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0))).collect::<io::Result<Vec<_>>>()?;
    listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect()
}
