//! How a store is opened.

/// Options for [`Store::open_with`](crate::Store::open_with).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Size every segment file is preallocated to (default 64 MiB).
    pub segment_bytes: u64,
    /// Most appends waiting for the writer; callers beyond it block
    /// (backpressure). Default 4096.
    pub queue_max: usize,
    /// Most appends the writer commits with one write and one fsync.
    /// Default 1024.
    pub group_max: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: annals_segment::SEGMENT_BYTES_DEFAULT,
            queue_max: 4096,
            group_max: 1024,
        }
    }
}

impl Options {
    /// Sets the segment size.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }
}
