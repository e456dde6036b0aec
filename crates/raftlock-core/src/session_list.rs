//! An arrival-ordered list of at most one entry per session (a lock's
//! holders, or its FIFO wait queue) where finding, ranking and removing a
//! session's entry do not scan the list.
//!
//! Entries sit in slots in arrival order; leaving empties a slot instead
//! of shifting the rest. A map from session to slot finds an entry in
//! O(log n), and a Fenwick tree over the occupied slots gives an entry's
//! rank (its place in the queue) in O(log n). A list of at most [`SMALL`]
//! slots (most holder lists, most queues) has neither and scans instead:
//! scanning that few costs less than the index's memory (a B-tree node
//! and a tree of counts per lock). Empty slots are squeezed out once they
//! outnumber the entries (plus a small slack): that costs O(n), at most
//! once per n removals, so O(1) amortized per removal; the list never
//! holds more than twice its entries' slots plus the slack.
//!
//! Serialized as the plain sequence of entries (the layout of the `Vec` or
//! `VecDeque` it replaced); the slots and indexes are rebuilt on load.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::Error as _;
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::SessionId;

/// Empty slots allowed beyond the number of entries before a squeeze, so
/// a short queue that churns is not squeezed on every removal.
const SLACK: usize = 8;
/// Up to this many slots, a session's entry is found by a scan.
const SMALL: usize = 16;

/// An entry that belongs to one session.
pub(crate) trait OfSession {
    fn session(&self) -> SessionId;
}

#[derive(Clone)]
pub(crate) struct SessionList<T> {
    /// In arrival order; `None` where an entry left.
    slots: Vec<Option<T>>,
    /// Every slot before it is empty.
    head: usize,
    len: usize,
    /// Once there are more than [`SMALL`] slots (boxed: most lists never
    /// have one, and it keeps their inline size small).
    index: Option<Box<Index>>,
}

/// What finds and ranks a session's entry without a scan.
#[derive(Clone)]
struct Index {
    slot_of: BTreeMap<SessionId, usize>,
    /// 1 for each occupied slot.
    occupied: Fenwick,
}

impl<T> Default for SessionList<T> {
    fn default() -> Self {
        SessionList {
            slots: Vec::new(),
            head: 0,
            len: 0,
            index: None,
        }
    }
}

impl<T: OfSession> SessionList<T> {
    /// A list of `entries` in this order; refuses a session twice.
    pub(crate) fn from_entries(entries: Vec<T>) -> Result<Self, String> {
        let mut seen = std::collections::BTreeSet::new();
        for entry in &entries {
            if !seen.insert(entry.session()) {
                return Err(format!("session {} is listed twice", entry.session()));
            }
        }
        let mut list = SessionList {
            len: entries.len(),
            slots: entries.into_iter().map(Some).collect(),
            head: 0,
            index: None,
        };
        list.index_if_large();
        Ok(list)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn slot(&self, session: SessionId) -> Option<usize> {
        match &self.index {
            Some(index) => index.slot_of.get(&session).copied(),
            None => self
                .slots
                .iter()
                .position(|e| e.as_ref().is_some_and(|e| e.session() == session)),
        }
    }

    /// Entries in the slots before `slot`.
    fn entries_before(&self, slot: usize) -> usize {
        match &self.index {
            Some(index) => index.occupied.prefix(slot),
            None => self.slots.iter().take(slot).flatten().count(),
        }
    }

    /// Builds the index once the slots outgrow a scan.
    fn index_if_large(&mut self) {
        if self.slots.len() <= SMALL || self.index.is_some() {
            return;
        }
        let mut slot_of = BTreeMap::new();
        let mut occupied = Fenwick::default();
        for (slot, entry) in self.slots.iter().enumerate() {
            occupied.push(usize::from(entry.is_some()));
            if let Some(entry) = entry {
                slot_of.insert(entry.session(), slot);
            }
        }
        self.index = Some(Box::new(Index { slot_of, occupied }));
    }

    /// The earliest entry still in the list.
    pub(crate) fn first(&self) -> Option<&T> {
        self.slots.get(self.head).and_then(Option::as_ref)
    }

    pub(crate) fn get(&self, session: SessionId) -> Option<&T> {
        let slot = self.slot(session)?;
        self.slots.get(slot).and_then(Option::as_ref)
    }

    /// The session's entry and how many entries are ahead of it.
    pub(crate) fn position(&self, session: SessionId) -> Option<(usize, &T)> {
        let slot = self.slot(session)?;
        let entry = self.slots.get(slot).and_then(Option::as_ref)?;
        Some((self.entries_before(slot), entry))
    }

    /// Adds `entry` at the back and returns its place (0 = first); gives
    /// it back if its session is in the list already.
    pub(crate) fn push(&mut self, entry: T) -> Result<usize, T> {
        if self.slot(entry.session()).is_some() {
            return Err(entry);
        }
        let place = self.len;
        if let Some(index) = &mut self.index {
            index.slot_of.insert(entry.session(), self.slots.len());
            index.occupied.push(1);
        }
        self.slots.push(Some(entry));
        self.len += 1;
        self.index_if_large();
        Ok(place)
    }

    pub(crate) fn remove(&mut self, session: SessionId) -> Option<T> {
        let slot = self.slot(session)?;
        let entry = self.slots.get_mut(slot).and_then(Option::take)?;
        if let Some(index) = &mut self.index {
            index.slot_of.remove(&session);
            index.occupied.remove_one(slot);
        }
        self.len -= 1;
        if self.is_empty() {
            *self = SessionList::default();
            return Some(entry);
        }
        while self.slots.get(self.head).is_some_and(Option::is_none) {
            self.head += 1;
        }
        if self.slots.len() - self.len() > self.len() + SLACK {
            self.squeeze();
        }
        Some(entry)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.slots.get(self.head..).unwrap_or(&[]).iter().flatten()
    }

    /// Drops the empty slots and renumbers the rest.
    fn squeeze(&mut self) {
        let slots = std::mem::take(&mut self.slots);
        self.slots = slots.into_iter().flatten().map(Some).collect();
        self.head = 0;
        self.index = None;
        self.index_if_large();
    }
}

impl<T: OfSession + PartialEq> PartialEq for SessionList<T> {
    /// The same entries in the same order; where the slots lie is no
    /// part of the list's value.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<T: OfSession + Eq> Eq for SessionList<T> {}

impl<T: OfSession + fmt::Debug> fmt::Debug for SessionList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: OfSession + Serialize> Serialize for SessionList<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for entry in self.iter() {
            seq.serialize_element(entry)?;
        }
        seq.end()
    }
}

impl<'de, T: OfSession + Deserialize<'de>> Deserialize<'de> for SessionList<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<T>::deserialize(deserializer)?;
        SessionList::from_entries(entries).map_err(D::Error::custom)
    }
}

/// Counts over slots with O(log n) prefix sums, point updates and appends.
/// Node k (1-based) holds the sum of slots (k - lowbit(k), k].
#[derive(Clone, Debug, Default)]
struct Fenwick {
    nodes: Vec<usize>,
}

fn lowbit(k: usize) -> usize {
    k & k.wrapping_neg()
}

impl Fenwick {
    /// Sum of the first `len` slots.
    fn prefix(&self, len: usize) -> usize {
        let mut k = len.min(self.nodes.len());
        let mut sum = 0usize;
        while k > 0 {
            sum = sum.saturating_add(self.nodes.get(k - 1).copied().unwrap_or(0));
            k -= lowbit(k);
        }
        sum
    }

    fn push(&mut self, value: usize) {
        let k = self.nodes.len() + 1;
        let covered = self
            .prefix(k - 1)
            .saturating_sub(self.prefix(k - lowbit(k)));
        self.nodes.push(value.saturating_add(covered));
    }

    fn remove_one(&mut self, slot: usize) {
        let mut k = slot + 1;
        while let Some(node) = self.nodes.get_mut(k - 1) {
            *node = node.saturating_sub(1);
            k += lowbit(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Entry(u128);

    impl OfSession for Entry {
        fn session(&self) -> SessionId {
            SessionId(self.0)
        }
    }

    /// Every operation agrees with a plain vector, through many squeezes.
    #[test]
    fn agrees_with_a_vector() {
        let mut list = SessionList::default();
        let mut plain: Vec<u128> = Vec::new();
        let mut next = 0u128;
        let mut rng = 12345u64;
        for _ in 0..20_000 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let roll = (rng >> 33) % 10;
            if roll < 5 || plain.is_empty() {
                next += 1;
                assert_eq!(list.push(Entry(next)), Ok(plain.len()));
                plain.push(next);
            } else {
                let at = usize::try_from(rng >> 40).unwrap() % plain.len();
                let at = if roll == 9 { 0 } else { at };
                let gone = plain.remove(at);
                assert_eq!(list.remove(SessionId(gone)), Some(Entry(gone)));
            }
            assert_eq!(list.len(), plain.len());
            assert_eq!(list.first().map(|e| e.0), plain.first().copied());
            if let Some(probe) = plain.get(plain.len() / 2) {
                let (place, _) = list.position(SessionId(*probe)).unwrap();
                assert_eq!(place, plain.len() / 2);
            }
            assert!(list.slots.len() <= 2 * list.len() + SLACK + 1);
            assert_eq!(list.index.is_some(), list.slots.len() > SMALL);
        }
        assert!(list.iter().map(|e| e.0).eq(plain.iter().copied()));
        assert!(list.push(Entry(plain[0])).is_err());
        let rebuilt = SessionList::from_entries(plain.iter().map(|s| Entry(*s)).collect());
        assert_eq!(rebuilt.unwrap(), list);
        assert!(SessionList::from_entries(vec![Entry(1), Entry(1)]).is_err());
    }
}
