//! How an instance's memory is wiped before its pool slot is reused: the
//! isolation between requests rests on it, and so does much of a fresh
//! instance's cost. Chosen once per machine.

use wasmtime::Enabled;

/// How much of each memory and table is reset in place (not with madvise)
/// when an instance is dropped, without swap: with PAGEMAP_SCAN only the
/// pages a call touched are rewritten.
const KEEP_RESIDENT_BYTES: usize = 8 << 20;

/// The same with swap: every kept byte is rewritten (no PAGEMAP_SCAN), so
/// keep little; the rest is returned with madvise.
const KEEP_RESIDENT_BYTES_WITH_SWAP: usize = 256 << 10;

/// How an instance's memory is wiped before its slot is reused — the
/// isolation between requests rests on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryReset {
    /// Rewrite only the pages the call touched (found with PAGEMAP_SCAN,
    /// Linux 6.7+) in an 8 MiB window; madvise beyond it.
    TouchedPages,
    /// Rewrite a small window whole, madvise the rest: chosen when the
    /// machine has swap, because PAGEMAP_SCAN does not report dirty pages
    /// the kernel swapped out (wasmtime PR #14357), which could then
    /// survive into the next instance.
    WholeWindow,
}

impl MemoryReset {
    /// The safe strategy for this machine: [`MemoryReset::WholeWindow`] if
    /// any swap is active (`/proc/swaps` lists a device or file).
    pub fn for_this_machine() -> Self {
        let swap_active = std::fs::read_to_string("/proc/swaps")
            .map(|swaps| swaps.lines().skip(1).any(|line| !line.trim().is_empty()))
            .unwrap_or(false);
        if swap_active {
            MemoryReset::WholeWindow
        } else {
            MemoryReset::TouchedPages
        }
    }

    pub(super) fn keep_resident(self) -> usize {
        match self {
            MemoryReset::TouchedPages => KEEP_RESIDENT_BYTES,
            MemoryReset::WholeWindow => KEEP_RESIDENT_BYTES_WITH_SWAP,
        }
    }

    pub(super) fn pagemap_scan(self) -> Enabled {
        match self {
            MemoryReset::TouchedPages => Enabled::Auto,
            MemoryReset::WholeWindow => Enabled::No,
        }
    }
}
