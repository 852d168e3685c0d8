//! The live sessions of a server: registered when a client is admitted, removed when the
//! session ends. The tunnel server routes new connections to the newest live session (so a
//! reconnected client takes over at once, while an older one that is still alive stays a
//! fallback); both servers walk the set at shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use polymux::Session;
use tokio::sync::Notify;

use crate::auth::Grants;

/// One registered session.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Registration number (increasing).
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// The session.
    pub session: Session,
    /// The tokens the client proved (which services the session may carry).
    pub grants: Arc<Grants>,
}

/// A set of live sessions. Clone it freely.
#[derive(Clone, Debug, Default)]
pub struct SessionSet {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    live: Vec<Entry>,
}

impl SessionSet {
    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a session and returns its id.
    pub fn insert(&self, peer: SocketAddr, session: Session, grants: Arc<Grants>) -> u64 {
        let id = {
            let mut state = self.state();
            let id = state.next_id;
            state.next_id += 1;
            state.live.push(Entry {
                id,
                peer,
                session,
                grants,
            });
            id
        };
        self.inner.changed.notify_waiters();
        id
    }

    /// Removes a session.
    pub fn remove(&self, id: u64) {
        self.state().live.retain(|e| e.id != id);
        self.inner.changed.notify_waiters();
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.state().live.len()
    }

    /// Every registered session.
    pub fn all(&self) -> Vec<Entry> {
        self.state().live.clone()
    }

    /// The newest session that has not ended and that `usable` accepts, skipping `exclude`.
    pub fn newest(
        &self,
        exclude: &[u64],
        usable: &(dyn Fn(&Entry) -> bool + Sync),
    ) -> Option<Entry> {
        self.state()
            .live
            .iter()
            .rev()
            .find(|e| !exclude.contains(&e.id) && e.session.end_reason().is_none() && usable(e))
            .cloned()
    }

    /// Waits up to `patience` for a session not in `exclude` that `usable` accepts.
    pub async fn wait_newest(
        &self,
        exclude: &[u64],
        usable: &(dyn Fn(&Entry) -> bool + Sync),
        patience: Duration,
    ) -> Option<Entry> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(entry) = self.newest(exclude, usable) {
                return Some(entry);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }
}
