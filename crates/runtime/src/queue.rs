//! A model version's queue, in three priorities: control traffic first, then canary, then shadow copies.
//! Each priority is a bounded channel; a worker always takes from the highest priority that has work.

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError, TrySendError};
use std::time::Instant;

/// Whose request it is, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Ordinary requests and a rollout's control arm.
    Control = 0,
    Canary = 1,
    Shadow = 2,
}

#[derive(Debug)]
pub(crate) struct Queues<T> {
    senders: [Sender<T>; 3],
}

pub(crate) struct Receivers<T> {
    receivers: [Receiver<T>; 3],
}

impl<T> Clone for Receivers<T> {
    fn clone(&self) -> Self {
        Self { receivers: self.receivers.clone() }
    }
}

/// Three bounded queues of `capacity` each.
pub(crate) fn queues<T>(capacity: usize) -> (Queues<T>, Receivers<T>) {
    let [(a, ra), (b, rb), (c, rc)] = [(); 3].map(|()| crossbeam_channel::bounded(capacity.max(1)));
    (Queues { senders: [a, b, c] }, Receivers { receivers: [ra, rb, rc] })
}

impl<T> Queues<T> {
    pub(crate) fn try_send(&self, item: T, priority: Priority) -> Result<(), TrySendError<T>> {
        self.senders[priority as usize].try_send(item)
    }
}

impl<T> Receivers<T> {
    /// The highest-priority item waiting now, if any; `Err` once every sender is gone and all is drained.
    pub(crate) fn try_take(&self) -> Result<Option<T>, ()> {
        let mut open = false;
        for rx in &self.receivers {
            match rx.try_recv() {
                Ok(item) => return Ok(Some(item)),
                Err(TryRecvError::Empty) => open = true,
                Err(TryRecvError::Disconnected) => {}
            }
        }
        if open { Ok(None) } else { Err(()) }
    }

    /// Items waiting, all priorities together.
    pub(crate) fn len(&self) -> usize {
        self.receivers.iter().map(Receiver::len).sum()
    }

    /// Waits for the highest-priority item, until `deadline` if given; `None` at the deadline or when
    /// every sender is gone.
    pub(crate) fn take(&self, deadline: Option<Instant>) -> Option<T> {
        loop {
            if let Some(item) = self.try_take().ok()? {
                return Some(item);
            }
            let mut sel = Select::new();
            for rx in &self.receivers {
                sel.recv(rx);
            }
            match deadline {
                Some(d) => {
                    sel.ready_deadline(d).ok()?;
                }
                None => {
                    sel.ready();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_priorities_are_served_first() {
        let (q, r) = queues::<&str>(4);
        q.try_send("shadow", Priority::Shadow).unwrap();
        q.try_send("canary", Priority::Canary).unwrap();
        q.try_send("control", Priority::Control).unwrap();
        let order: Vec<_> = (0..3).map(|_| r.take(None).unwrap()).collect();
        assert_eq!(order, ["control", "canary", "shadow"]);
        assert_eq!(r.try_take(), Ok(None));
        assert!(r.take(Some(Instant::now() + std::time::Duration::from_millis(5))).is_none());
        drop(q);
        assert_eq!(r.try_take(), Err(()));
        assert!(r.take(None).is_none());
    }

    #[test]
    fn each_priority_is_bounded() {
        let (q, _r) = queues::<u8>(1);
        q.try_send(1, Priority::Shadow).unwrap();
        assert!(matches!(q.try_send(2, Priority::Shadow), Err(TrySendError::Full(_))));
        q.try_send(3, Priority::Control).unwrap();
    }
}
