//! The server's two calls into the C allocator (issue 17: memory per idle document).
//!
//! glibc's `malloc` keeps memory a program frees: a page goes back to the system only when
//! it sits at the top of an arena, and the server's arenas (one per thread that allocates:
//! the hub, the blocking pool that loads documents, tokio's workers) are left fragmented by
//! every burst of loads and syncs. Measured on the desk's path (jobs created, fetched once
//! by their devices, then idle), about two thirds of the server's memory was such free
//! memory. [`release_free_memory`] hands it back (`malloc_trim(0)`, which also releases the
//! free pages inside an arena, not only its top); [`in_use_bytes`] is what the program holds
//! (`mallinfo2`), to tell live data from what the allocator keeps.
//!
//! Both are no-ops (`false`, `None`) where the C library is not glibc.
//!
//! The workspace forbids unsafe code: these are its only two calls, each to a glibc
//! function that takes plain integers, touches no memory of ours and is thread-safe.

/// Gives the free memory the allocator keeps back to the system. Returns whether any was
/// released. Takes each arena's lock in turn while it walks its free blocks (a few ms per
/// hundred MiB): call it when the process is quiet, off latency-sensitive threads.
pub fn release_free_memory() -> bool {
    trim()
}

/// Bytes the program holds from the allocator (allocated and not freed, small blocks and
/// large mapped ones), or `None` where that cannot be asked.
pub fn in_use_bytes() -> Option<u64> {
    mallinfo()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    // SAFETY: malloc_trim takes an integer (the padding to keep at the top of the heap),
    // reads and writes only the allocator's own state under its locks, and is safe to call
    // from any thread at any time.
    unsafe { libc::malloc_trim(0) != 0 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn mallinfo() -> Option<u64> {
    // SAFETY: mallinfo2 takes nothing and returns a plain struct by value, read under the
    // allocator's locks; available since glibc 2.33.
    let info = unsafe { libc::mallinfo2() };
    Some((info.uordblks as u64).saturating_add(info.hblkhd as u64))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn mallinfo() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_use_counts_a_live_allocation_and_trim_keeps_it() {
        let Some(before) = in_use_bytes() else {
            return; // not glibc: nothing to ask
        };
        let block = vec![7u8; 8 << 20];
        let during = in_use_bytes().unwrap_or(0);
        assert!(during >= before + (8 << 20), "{during} < {before} + 8 MiB");
        release_free_memory();
        // What is live stays live: trimming only returns free pages.
        assert!(block.iter().all(|b| *b == 7));
        assert!(in_use_bytes().unwrap_or(0) >= 8 << 20);
    }
}
