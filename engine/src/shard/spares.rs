//! Byte buffers of finished transactions and batches, kept for the next ones.
//!
//! A transaction's journal entry, its data and the batch that carries its record are each a
//! `Vec<u8>`. Allocating and freeing them per transaction costs time on the commit path
//! and churns the heap; the shard hands them back here instead, so in the steady state a
//! write allocates none of them. The pool is bounded in buffers and in each buffer's
//! capacity: an unusually large buffer is freed rather than kept.

/// Most buffers kept.
const MAX_SPARES: usize = 1024;

/// Largest capacity kept, in bytes (a buffer that grew past it is freed).
const MAX_SPARE_BYTES: usize = 1 << 20;

#[derive(Default)]
pub(crate) struct Spares {
    bufs: Vec<Vec<u8>>,
}

impl Spares {
    /// An empty buffer, with the capacity of one given back earlier when there is one.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.bufs.pop().unwrap_or_default()
    }

    /// An all-zero buffer of `len` bytes.
    pub(crate) fn zeroed(&mut self, len: usize) -> Vec<u8> {
        let mut b = self.take();
        b.resize(len, 0);
        b
    }

    /// Keeps `buf`'s memory for a later `take` (its contents are dropped).
    pub(crate) fn give(&mut self, mut buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap == 0 || cap > MAX_SPARE_BYTES || self.bufs.len() >= MAX_SPARES {
            return;
        }
        buf.clear();
        self.bufs.push(buf);
    }

    /// Buffers kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.bufs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_taken_again_empty() {
        let mut s = Spares::default();
        let mut b = Vec::with_capacity(4096);
        b.extend_from_slice(&[7; 100]);
        let ptr = b.as_ptr();
        s.give(b);
        let z = s.zeroed(300);
        assert_eq!(z.as_ptr(), ptr, "the same memory comes back");
        assert_eq!(z, vec![0; 300], "with none of its old bytes");
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn the_pool_is_bounded() {
        let mut s = Spares::default();
        s.give(Vec::new());
        s.give(Vec::with_capacity(MAX_SPARE_BYTES + 1));
        assert_eq!(s.len(), 0, "empty and oversized buffers are not kept");
        for _ in 0..MAX_SPARES + 10 {
            s.give(Vec::with_capacity(8));
        }
        assert_eq!(s.len(), MAX_SPARES);
    }
}
