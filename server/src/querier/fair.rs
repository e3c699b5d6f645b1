//! Fair turns at the query work: a fixed number of slots (one per core)
//! that waiting tenants receive in rotation, so a tenant with many queries
//! in flight cannot starve another tenant's query. A query takes a slot for
//! each batch of streams it decodes and filters, the work Loki's queriers
//! pull from its per-tenant queues in rotation.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// Slots handed out in rotation over the tenants waiting for one.
pub struct FairSlots {
    state: Mutex<State>,
}

struct State {
    free: usize,
    /// Each waiting tenant's waiters, oldest first.
    waiting: HashMap<String, VecDeque<oneshot::Sender<()>>>,
    /// Tenants with waiters, in the order of their next turn.
    turns: VecDeque<String>,
}

/// A slot, given back (to the next tenant in turn) on drop.
pub struct Slot<'a> {
    slots: &'a FairSlots,
}

impl FairSlots {
    pub fn new(slots: usize) -> Self {
        Self { state: Mutex::new(State { free: slots.max(1), waiting: HashMap::new(), turns: VecDeque::new() }) }
    }

    /// Waits for `tenant`'s turn at a slot.
    pub async fn acquire(&self, tenant: &str) -> Slot<'_> {
        let rx = {
            let mut guard = self.state.lock();
            let s = &mut *guard;
            if s.free > 0 && s.turns.is_empty() {
                s.free -= 1;
                return Slot { slots: self };
            }
            let (tx, rx) = oneshot::channel();
            let queue = s.waiting.entry(tenant.to_string()).or_default();
            if queue.is_empty() {
                s.turns.push_back(tenant.to_string());
            }
            queue.push_back(tx);
            rx
        };
        let mut waiting = Waiting { slots: self, rx: Some(rx) };
        if let Some(rx) = waiting.rx.as_mut() {
            // Only a dropped `FairSlots` drops a sender unsent.
            let _ = rx.await;
        }
        waiting.rx = None;
        Slot { slots: self }
    }

    /// Waiters of all tenants.
    pub fn waiting(&self) -> usize {
        self.state.lock().waiting.values().map(VecDeque::len).sum()
    }

    /// Gives a freed slot to the next waiting tenant in turn (skipping
    /// waiters that gave up), or back to the pool.
    fn release(&self) {
        let mut s = self.state.lock();
        while let Some(tenant) = s.turns.pop_front() {
            let Some(queue) = s.waiting.get_mut(&tenant) else { continue };
            let mut handed = false;
            while let Some(tx) = queue.pop_front() {
                if tx.send(()).is_ok() {
                    handed = true;
                    break;
                }
            }
            if queue.is_empty() {
                s.waiting.remove(&tenant);
            } else {
                s.turns.push_back(tenant);
            }
            if handed {
                return;
            }
        }
        s.free += 1;
    }
}

/// A wait in line; given up (the query was cancelled), it passes on a slot
/// that was handed to it in the meantime.
struct Waiting<'a> {
    slots: &'a FairSlots,
    rx: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                self.slots.release();
            }
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.slots.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn waiting_tenants_take_turns() {
        let slots = Arc::new(FairSlots::new(1));
        let held = slots.acquire("a").await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Tenant a queues three waiters before tenant b queues one.
        for (i, tenant) in ["a", "a", "a", "b"].into_iter().enumerate() {
            let (mine, order) = (slots.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = mine.acquire(tenant).await;
                order.lock().push(format!("{tenant}{i}"));
            }));
            // Wait until the waiter is queued, so the arrival order is fixed.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while slots.waiting() < i + 1 {
                assert!(std::time::Instant::now() < deadline, "waiter {i} never queued");
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock(), ["a0", "b3", "a1", "a2"], "b's only query goes second, not last");
        assert_eq!(slots.waiting(), 0);
        let _again = slots.acquire("c").await;
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_does_not_keep_the_slot() {
        let slots = FairSlots::new(1);
        let held = slots.acquire("a").await;
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(10), slots.acquire("b")).await;
        assert!(gave_up.is_err(), "no slot while one is held");
        drop(held);
        let _next = tokio::time::timeout(std::time::Duration::from_secs(5), slots.acquire("c"))
            .await
            .expect("the slot came back to the pool");
    }
}
