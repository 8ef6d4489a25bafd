//! A model version's queue, in lanes: for each client priority level (one unless the model's config
//! asks for more, as Triton's `priority_levels`), control traffic and then canary traffic; shadow copies
//! last. Each lane is a bounded channel; a worker always takes from the first lane that has work.

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

/// The most client priority levels a model may declare (each level is two lanes of the queue).
pub const MAX_PRIORITY_LEVELS: u32 = 16;

/// A model's client priority levels, as Triton's `dynamic_batching.priority_levels` and
/// `default_priority_level`: a request's `priority` parameter picks a level, 1 first; 0, none, or one
/// past the last level takes the default (as Triton does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriorityLevels {
    levels: u32,
    default: u32,
}

impl Default for PriorityLevels {
    /// One level: the `priority` parameter changes nothing.
    fn default() -> Self {
        Self { levels: 1, default: 1 }
    }
}

/// Priority levels a config cannot have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LevelsError {
    #[error("priority_levels {0} is more than the {MAX_PRIORITY_LEVELS} supported")]
    TooMany(u32),
    #[error("default_priority_level {default} is not between 1 and priority_levels ({levels})")]
    Default { default: u32, levels: u32 },
}

impl PriorityLevels {
    /// `levels` levels (0 or 1: none), requests without a level at `default` (1-based; the last level
    /// when `None`).
    pub fn new(levels: u32, default: Option<u32>) -> Result<Self, LevelsError> {
        let levels = levels.max(1);
        if levels > MAX_PRIORITY_LEVELS {
            return Err(LevelsError::TooMany(levels));
        }
        let default = default.unwrap_or(levels);
        if !(1..=levels).contains(&default) {
            return Err(LevelsError::Default { default, levels });
        }
        Ok(Self { levels, default })
    }

    pub fn levels(&self) -> u32 {
        self.levels
    }

    pub fn default_level(&self) -> u32 {
        self.default
    }

    /// The 0-based level a request's `priority` parameter puts it at.
    pub(crate) fn level(&self, asked: Option<u64>) -> usize {
        let level = match asked {
            Some(p) if p >= 1 && p <= u64::from(self.levels) => p,
            _ => u64::from(self.default),
        };
        usize::try_from(level - 1).unwrap_or(0)
    }

    fn lanes(&self) -> usize {
        self.levels as usize * 2 + 1
    }

    /// The lane of a request at `level` (0-based) from `priority`'s arm.
    fn lane(&self, priority: Priority, level: usize) -> usize {
        match priority {
            Priority::Shadow => self.lanes() - 1,
            Priority::Control => level * 2,
            Priority::Canary => level * 2 + 1,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Queues<T> {
    senders: Vec<Sender<T>>,
    levels: PriorityLevels,
}

pub(crate) struct Receivers<T> {
    receivers: Vec<Receiver<T>>,
}

impl<T> Clone for Receivers<T> {
    fn clone(&self) -> Self {
        Self { receivers: self.receivers.clone() }
    }
}

/// One bounded lane of `capacity` per level and arm, and one for shadows.
pub(crate) fn queues<T>(capacity: usize, levels: PriorityLevels) -> (Queues<T>, Receivers<T>) {
    let (senders, receivers) = (0..levels.lanes()).map(|_| crossbeam_channel::bounded(capacity.max(1))).unzip();
    (Queues { senders, levels }, Receivers { receivers })
}

impl<T> Queues<T> {
    /// Queues `item` from `priority`'s arm at the client's `level` (0-based, from
    /// [`PriorityLevels::level`]).
    pub(crate) fn try_send(&self, item: T, priority: Priority, level: usize) -> Result<(), TrySendError<T>> {
        self.senders[self.levels.lane(priority, level)].try_send(item)
    }

    pub(crate) fn levels(&self) -> &PriorityLevels {
        &self.levels
    }
}

impl<T> Receivers<T> {
    /// The item from the first lane with work now, if any; `Err` once every sender is gone and all is
    /// drained.
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

    /// Items waiting, all lanes together.
    pub(crate) fn len(&self) -> usize {
        self.receivers.iter().map(Receiver::len).sum()
    }

    /// Waits for the item from the first lane with work, until `deadline` if given; `None` at the
    /// deadline or when every sender is gone.
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
        let (q, r) = queues::<&str>(4, PriorityLevels::default());
        q.try_send("shadow", Priority::Shadow, 0).unwrap();
        q.try_send("canary", Priority::Canary, 0).unwrap();
        q.try_send("control", Priority::Control, 0).unwrap();
        let order: Vec<_> = (0..3).map(|_| r.take(None).unwrap()).collect();
        assert_eq!(order, ["control", "canary", "shadow"]);
        assert_eq!(r.try_take(), Ok(None));
        assert!(r.take(Some(Instant::now() + std::time::Duration::from_millis(5))).is_none());
        drop(q);
        assert_eq!(r.try_take(), Err(()));
        assert!(r.take(None).is_none());
    }

    #[test]
    fn client_levels_come_before_arms_and_shadows_last() {
        let levels = PriorityLevels::new(3, Some(2)).unwrap();
        let (q, r) = queues::<&str>(4, levels);
        for (item, priority, asked) in [
            ("shadow", Priority::Shadow, Some(1)),
            ("canary default", Priority::Canary, None),
            ("control 3", Priority::Control, Some(3)),
            ("control default", Priority::Control, Some(0)),
            ("canary 1", Priority::Canary, Some(1)),
            ("control past the last level", Priority::Control, Some(4)),
            ("control 1", Priority::Control, Some(1)),
        ] {
            q.try_send(item, priority, levels.level(asked)).unwrap();
        }
        let order: Vec<_> = (0..7).map(|_| r.take(None).unwrap()).collect();
        assert_eq!(
            order,
            [
                "control 1",
                "canary 1",
                "control default",
                "control past the last level",
                "canary default",
                "control 3",
                "shadow"
            ]
        );
    }

    #[test]
    fn levels_are_checked() {
        assert_eq!(PriorityLevels::new(0, None), Ok(PriorityLevels::default()));
        assert_eq!(PriorityLevels::new(4, None).unwrap().default_level(), 4);
        assert_eq!(
            PriorityLevels::new(4, Some(5)).unwrap_err().to_string(),
            "default_priority_level 5 is not between 1 and priority_levels (4)"
        );
        assert!(PriorityLevels::new(4, Some(0)).is_err());
        assert_eq!(PriorityLevels::new(17, None), Err(LevelsError::TooMany(17)));
        // Without levels, any priority is the one level.
        let one = PriorityLevels::default();
        assert_eq!([None, Some(0), Some(1), Some(9)].map(|p| one.level(p)), [0; 4]);
    }

    #[test]
    fn each_lane_is_bounded() {
        let (q, _r) = queues::<u8>(1, PriorityLevels::new(2, None).unwrap());
        q.try_send(1, Priority::Shadow, 0).unwrap();
        assert!(matches!(q.try_send(2, Priority::Shadow, 1), Err(TrySendError::Full(_))));
        q.try_send(3, Priority::Control, 1).unwrap();
        assert!(matches!(q.try_send(4, Priority::Control, 1), Err(TrySendError::Full(_))));
        q.try_send(5, Priority::Control, 0).unwrap();
    }
}
