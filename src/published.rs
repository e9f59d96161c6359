//! A value that changes over time, and tasks that wait for it to change,
//! woken in a fixed order.
//!
//! Why not `tokio::sync::watch`: its receivers wait on one of eight
//! `Notify`s picked by tokio's thread-local random generator, and tokio
//! seeds that generator from a process-wide counter. Under madsim the
//! order in which several waiters wake then depended on what the process
//! had run before: the simulator's determinism check found a seed giving
//! two different runs in one process once several v3lock waiters watched
//! the revision. Here every waiter waits on one `Notify`, which wakes them
//! in the order they started waiting. clippy.toml bans the watch channel.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Debug)]
pub struct Published<T> {
    value: Mutex<T>,
    changed: Notify,
}

impl<T: Copy + PartialEq> Published<T> {
    pub fn new(value: T) -> Arc<Published<T>> {
        Arc::new(Published {
            value: Mutex::new(value),
            changed: Notify::new(),
        })
    }

    pub fn get(&self) -> T {
        *self.value.lock().expect("published value lock")
    }

    /// Sets the value; wakes every waiter if it changed.
    pub fn set(&self, value: T) {
        let changed = {
            let mut current = self.value.lock().expect("published value lock");
            std::mem::replace(&mut *current, value) != value
        };
        if changed {
            self.changed.notify_waiters();
        }
    }

    /// A waiter that has seen the current value.
    pub fn subscribe(self: &Arc<Self>) -> Subscriber<T> {
        Subscriber {
            seen: self.get(),
            published: self.clone(),
        }
    }
}

#[derive(Debug)]
pub struct Subscriber<T> {
    published: Arc<Published<T>>,
    seen: T,
}

impl<T: Copy + PartialEq> Subscriber<T> {
    /// Resolves once the value differs from the one last seen (at once if
    /// it already does), and marks the new one seen.
    pub async fn changed(&mut self) -> T {
        loop {
            let notified = self.published.changed.notified();
            tokio::pin!(notified);
            // Registered before the look, so a change in between wakes us.
            notified.as_mut().enable();
            let now = self.published.get();
            if now != self.seen {
                self.seen = now;
                return now;
            }
            notified.await;
        }
    }

    /// Resolves once the value satisfies `condition`.
    pub async fn wait_for(&mut self, condition: impl Fn(&T) -> bool) -> T {
        let mut now = self.published.get();
        while !condition(&now) {
            now = self.changed().await;
        }
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_see_each_change_and_a_change_before_waiting() {
        let published = Published::new(1);
        let mut waiter = published.subscribe();
        published.set(2);
        assert_eq!(waiter.changed().await, 2, "a change before waiting counts");
        let task = tokio::spawn(async move { waiter.wait_for(|v| *v >= 4).await });
        published.set(3);
        published.set(3);
        published.set(4);
        assert_eq!(task.await.unwrap(), 4);
    }
}
