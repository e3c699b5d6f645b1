//! A fault-injecting TCP proxy between the nodes, for runs without root
//! (`--net proxy`): network partitions and added latency.
//!
//! Every ingester advertises a proxy address instead of its own, and its
//! connections to other nodes leave from an address of its own
//! (`--grpc.source-addr=127.0.0.<10+id>`), so the proxy knows both ends of
//! every connection. A cut holds the bytes of the connections between two
//! nodes, both ways, and holds new connections before they reach the other
//! end — as a real partition does to TCP: nothing arrives, nothing is
//! refused, and what was in flight is delivered after the heal unless an
//! end gave up first (gRPC's keep-alive closes a silent connection after
//! 10 s). A delay holds every chunk of bytes to or from a node for that long
//! before it is passed on.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// The address node `id`'s connections leave from.
pub fn source_ip(id: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + (id % 240) as u8))
}

/// Which node a connection comes from: 0 for anything that is not a node
/// (the front, the harness).
fn node_of(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) if v4.octets()[..3] == [127, 0, 0] && v4.octets()[3] >= 10 && v4.octets()[3] < 250 => {
            u64::from(v4.octets()[3]) - 10
        }
        _ => 0,
    }
}

/// The faults in force.
#[derive(Default)]
struct Faults {
    /// Unordered pairs of nodes that cannot reach each other.
    cut: HashSet<(u64, u64)>,
    /// Added one-way latency of every link of a node.
    delay: HashMap<u64, Duration>,
}

impl Faults {
    fn blocked(&self, a: u64, b: u64) -> bool {
        self.cut.contains(&(a.min(b), a.max(b)))
    }

    fn delay(&self, a: u64, b: u64) -> Duration {
        let of = |n| self.delay.get(&n).copied().unwrap_or_default();
        of(a).max(of(b))
    }
}

struct Shared {
    faults: Mutex<Faults>,
    changed: Condvar,
    stop: AtomicBool,
    /// Both sockets of every open connection, to close them on drop.
    open: Mutex<HashMap<u64, [TcpStream; 2]>>,
    next: AtomicU64,
}

impl Shared {
    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits while `a` and `b` are cut apart; false if the proxy stops or
    /// `closed` is set meanwhile.
    fn wait_open(&self, a: u64, b: u64, closed: &AtomicBool) -> bool {
        let mut f = self.faults();
        while f.blocked(a, b) {
            if self.stop.load(Ordering::Relaxed) || closed.load(Ordering::Relaxed) {
                return false;
            }
            f = self.changed.wait_timeout(f, Duration::from_millis(100)).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
        }
        !self.stop.load(Ordering::Relaxed)
    }
}

/// The proxy of one node: where it listens, and the node behind it.
#[derive(Clone, Debug)]
pub struct Route {
    pub node: u64,
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
}

/// The running proxy; stops and closes every connection on drop.
pub struct Proxy {
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listens on every route's address.
    pub fn start(routes: &[Route]) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            faults: Mutex::default(),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            open: Mutex::default(),
            next: AtomicU64::new(0),
        });
        let p = Proxy { shared };
        for r in routes {
            p.add(r.clone())?;
        }
        Ok(p)
    }

    /// Starts proxying one more node.
    pub fn add(&self, route: Route) -> std::io::Result<()> {
        let listener = TcpListener::bind(route.listen)?;
        listener.set_nonblocking(true)?;
        let shared = self.shared.clone();
        thread::Builder::new().name(format!("proxy-{}", route.node)).spawn(move || accept_loop(&shared, &listener, &route))?;
        Ok(())
    }

    /// Cuts node `a` off from each of `others` (both directions).
    pub fn cut(&self, a: u64, others: &[u64]) {
        let mut f = self.shared.faults();
        for &b in others {
            f.cut.insert((a.min(b), a.max(b)));
        }
    }

    /// Adds `delay` to every link of `node`, each way.
    pub fn delay(&self, node: u64, delay: Duration) {
        self.shared.faults().delay.insert(node, delay);
    }

    /// Removes every cut and delay; held bytes flow again.
    pub fn heal(&self) {
        *self.shared.faults() = Faults::default();
        self.shared.changed.notify_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.changed.notify_all();
        let open = std::mem::take(&mut *self.shared.open.lock().unwrap_or_else(|p| p.into_inner()));
        for [a, b] in open.values() {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener, route: &Route) {
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((client, peer)) => {
                let shared = shared.clone();
                let route = route.clone();
                let _ = thread::Builder::new().name("proxy-conn".into()).spawn(move || connect(&shared, client, node_of(peer.ip()), &route));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(20)),
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// One connection from node `from` to `route.node`: held while the two are
/// cut apart, then joined to the node and pumped both ways.
fn connect(shared: &Arc<Shared>, client: TcpStream, from: u64, route: &Route) {
    let to = route.node;
    let closed = Arc::new(AtomicBool::new(false));
    if client.set_nonblocking(false).is_err() || !shared.wait_open(from, to, &closed) {
        return;
    }
    let Ok(upstream) = TcpStream::connect_timeout(&route.upstream, Duration::from_secs(2)) else { return };
    let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
    let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) = (client.try_clone(), upstream.try_clone(), client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let id = shared.next.fetch_add(1, Ordering::Relaxed);
    shared.open.lock().unwrap_or_else(|p| p.into_inner()).insert(id, [c3, u3]);
    let forward = {
        let (shared, closed) = (shared.clone(), closed.clone());
        thread::spawn(move || pump(&shared, client, upstream, from, to, &closed))
    };
    pump(shared, u2, c2, to, from, &closed);
    let _ = forward.join();
    shared.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
}

/// A chunk read from one end, with when it was read (`None`: end of stream).
type Chunk = (Instant, Option<Vec<u8>>);

/// Copies `src` to `dst` (bytes from node `a` to node `b`), holding them
/// while the two are cut apart and for the delay of their link. Closes
/// both sockets when either end fails.
fn pump(shared: &Arc<Shared>, src: TcpStream, dst: TcpStream, a: u64, b: u64, closed: &Arc<AtomicBool>) {
    let (tx, rx) = sync_channel::<Chunk>(16);
    let reader = {
        let closed = closed.clone();
        let Ok(src2) = src.try_clone() else { return };
        thread::spawn(move || read_side(src2, &tx, &closed))
    };
    write_side(shared, &dst, &rx, a, b, closed);
    if closed.load(Ordering::Relaxed) {
        let _ = (src.shutdown(Shutdown::Both), dst.shutdown(Shutdown::Both));
    }
    drop(rx);
    let _ = reader.join();
}

fn read_side(mut src: TcpStream, tx: &SyncSender<Chunk>, closed: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match src.read(&mut buf) {
            Ok(0) => {
                let _ = tx.send((Instant::now(), None));
                return;
            }
            Ok(n) => {
                if tx.send((Instant::now(), Some(buf[..n].to_vec()))).is_err() {
                    return;
                }
            }
            Err(_) => {
                closed.store(true, Ordering::Relaxed);
                let _ = tx.send((Instant::now(), None));
                return;
            }
        }
    }
}

fn write_side(shared: &Shared, mut dst: &TcpStream, rx: &Receiver<Chunk>, a: u64, b: u64, closed: &AtomicBool) {
    while let Ok((read_at, chunk)) = rx.recv() {
        if !shared.wait_open(a, b, closed) {
            closed.store(true, Ordering::Relaxed);
            return;
        }
        let due = read_at + shared.faults().delay(a, b);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        match chunk {
            Some(bytes) => {
                if dst.write_all(&bytes).is_err() {
                    closed.store(true, Ordering::Relaxed);
                    return;
                }
            }
            None => {
                let _ = dst.shutdown(Shutdown::Write);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on 127.0.0.1; returns its address.
    fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        thread::spawn(move || {
            for s in l.incoming().flatten() {
                thread::spawn(move || {
                    let mut r = s.try_clone().expect("clone");
                    let mut w = s;
                    let _ = std::io::copy(&mut r, &mut w);
                });
            }
        });
        addr
    }

    fn free() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port")
    }

    /// Connects to `to` from 127.0.0.1, which the proxy sees as node 0.
    fn dial(to: SocketAddr) -> TcpStream {
        let s = TcpStream::connect(to).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        s
    }

    fn round_trip(s: &mut TcpStream) -> Duration {
        let t = Instant::now();
        s.write_all(b"ping").expect("write");
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"ping");
        t.elapsed()
    }

    #[test]
    fn passes_bytes_and_adds_the_delay_of_a_slow_node() {
        let route = Route { node: 1, listen: free(), upstream: echo() };
        let p = Proxy::start(std::slice::from_ref(&route)).expect("proxy");
        let mut s = dial(route.listen);
        let fast = round_trip(&mut s);
        p.delay(1, Duration::from_millis(150));
        let slow = round_trip(&mut s);
        assert!(slow >= Duration::from_millis(300), "two delayed hops, got {slow:?} (undelayed {fast:?})");
        p.heal();
        let healed = round_trip(&mut s);
        assert!(healed < Duration::from_millis(300), "{healed:?}");
    }

    #[test]
    fn a_cut_holds_traffic_until_healed_and_only_between_the_cut_nodes() {
        let route = Route { node: 1, listen: free(), upstream: echo() };
        let p = Proxy::start(std::slice::from_ref(&route)).expect("proxy");
        let mut s = dial(route.listen);
        round_trip(&mut s);
        // Node 2 cut from node 1 does not touch the front's (node 0) link.
        p.cut(1, &[2]);
        round_trip(&mut s);
        // Cut from the front: bytes are held, not lost.
        p.cut(1, &[0]);
        s.write_all(b"ping").expect("write");
        s.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
        let mut buf = [0u8; 4];
        assert!(s.read_exact(&mut buf).is_err(), "nothing crosses a cut");
        p.heal();
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        s.read_exact(&mut buf).expect("held bytes arrive after the heal");
        assert_eq!(&buf, b"ping");
    }

    #[test]
    fn sources_map_to_nodes() {
        assert_eq!(node_of(source_ip(3)), 3);
        assert_eq!(node_of(IpAddr::V4(Ipv4Addr::LOCALHOST)), 0);
        assert_eq!(node_of("10.0.0.12".parse().expect("ip")), 0);
    }
}
