//! The cache of rendered map tiles: least recently used first out, bounded
//! by the bytes it holds (`[api] tile_cache_mb`), not by a count, since a
//! transparent tile is a hundred bytes and a busy one tens of kilobytes.

use std::sync::{Arc, Mutex};

/// Bytes counted per entry besides its key and body (map node, `Arc`).
const ENTRY_OVERHEAD: usize = 64;

/// A byte-bounded LRU cache of tile bodies.
pub struct TileCache {
    cap_bytes: usize,
    inner: Mutex<Entries>,
}

struct Entries {
    map: lru::LruCache<String, Arc<[u8]>>,
    bytes: usize,
}

fn cost(key: &str, body: &[u8]) -> usize {
    key.len() + body.len() + ENTRY_OVERHEAD
}

impl TileCache {
    /// A cache of at most `cap_bytes` (0: keeps nothing).
    pub fn new(cap_bytes: usize) -> Self {
        Self {
            cap_bytes,
            inner: Mutex::new(Entries {
                map: lru::LruCache::unbounded(),
                bytes: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The body cached under `key`, marking it recently used.
    pub fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        self.lock().map.get(key).cloned()
    }

    /// Caches `body` under `key`, dropping the least recently used entries
    /// until everything fits. A body larger than the whole cache is not kept.
    pub fn insert(&self, key: String, body: Arc<[u8]>) {
        let c = cost(&key, &body);
        if c > self.cap_bytes {
            return;
        }
        let mut g = self.lock();
        if let Some(old) = g.map.pop(&key) {
            g.bytes -= cost(&key, &old);
        }
        while g.bytes + c > self.cap_bytes {
            match g.map.pop_lru() {
                Some((k, v)) => g.bytes -= cost(&k, &v),
                None => break,
            }
        }
        g.bytes += c;
        g.map.put(key, body);
    }

    /// Bytes held (keys, bodies and the per-entry overhead).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_under_its_bytes_and_drops_the_least_recently_used() {
        let body = |n: usize| -> Arc<[u8]> { Arc::from(vec![7u8; n].as_slice()) };
        let key = |i: usize| format!("tile-{i:04}");
        let cap = 10 * cost(&key(0), &body(1000));
        let c = TileCache::new(cap);
        for i in 0..100 {
            c.insert(key(i), body(1000));
            assert!(c.bytes() <= cap, "{} > {cap}", c.bytes());
            // Keep tile 0 in use: it is never the least recently used.
            assert!(c.get(&key(0)).is_some(), "{i}");
        }
        assert_eq!(c.len(), 10);
        assert!(c.get(&key(1)).is_none());
        assert!(c.get(&key(99)).is_some());
        // Small bodies: more of them fit in the same bytes.
        for i in 200..400 {
            c.insert(key(i), body(10));
        }
        assert!(c.bytes() <= cap);
        assert!(c.len() > 10);
        // Too large for the whole cache: not kept, nothing evicted for it.
        let before = c.len();
        c.insert("huge".into(), body(cap));
        assert!(c.get("huge").is_none());
        assert_eq!(c.len(), before);
        // Replacing a key does not count it twice.
        c.insert(key(399), body(10));
        assert!(c.bytes() <= cap);
        let off = TileCache::new(0);
        off.insert(key(1), body(1));
        assert!(off.is_empty());
    }
}
