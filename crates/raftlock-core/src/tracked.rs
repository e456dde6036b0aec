//! The only ways apply changes a session's or a lock's membership: each
//! keeps the usage counters (`usage.rs`) in step with the change, so no
//! code path can forget to.

use crate::queue::Lock;
use crate::sessions::Session;
use crate::table::LockTable;
use crate::usage::{LockLoad, SessionLoad};
use crate::SessionId;

impl LockTable {
    /// Changes session `id` through `change`; `None` if there is no such
    /// session.
    pub(crate) fn with_session<R>(
        &mut self,
        id: SessionId,
        change: impl FnOnce(&mut Session) -> R,
    ) -> Option<R> {
        let session = self.sessions.get_mut(&id)?;
        let before = SessionLoad::of(session);
        let result = change(session);
        self.usage.session_changed(before, SessionLoad::of(session));
        Some(result)
    }

    /// Changes lock `name` through `change`; `None` if it is not in the table.
    pub(crate) fn with_lock<R>(
        &mut self,
        name: &str,
        change: impl FnOnce(&mut Lock) -> R,
    ) -> Option<R> {
        let lock = self.locks.get_mut(name)?;
        let before = LockLoad::of(lock);
        let result = change(lock);
        self.usage.lock_changed(before, LockLoad::of(lock));
        Some(result)
    }

    pub(crate) fn insert_session(&mut self, id: SessionId, session: Session) {
        self.usage.session_opened(session.principal());
        self.usage
            .session_changed(SessionLoad::default(), SessionLoad::of(&session));
        if let Some(old) = self.sessions.insert(id, session) {
            // Callers refuse an id in use first; counted out all the same.
            self.usage
                .session_closed(old.principal(), SessionLoad::of(&old));
        }
    }

    pub(crate) fn remove_session(&mut self, id: SessionId) -> Option<Session> {
        let session = self.sessions.remove(&id)?;
        self.usage
            .session_closed(session.principal(), SessionLoad::of(&session));
        Some(session)
    }

    /// Puts `name` in the table (empty) if it is not there.
    pub(crate) fn ensure_lock(&mut self, name: &str) {
        if !self.locks.contains_key(name) {
            self.locks.insert(name.to_owned(), Lock::default());
        }
    }

    pub(crate) fn remove_lock(&mut self, name: &str) -> Option<Lock> {
        let lock = self.locks.remove(name)?;
        self.usage
            .lock_changed(LockLoad::of(&lock), LockLoad::default());
        Some(lock)
    }
}
