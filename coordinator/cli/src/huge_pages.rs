//! Transparent huge pages per subcommand.
//!
//! The `mapfleet` binary asks jemalloc for huge pages on its heap (`thp:always`, its
//! `main.rs`), which made `mapfleet run` 13-15 % faster on large batches. The same binary is
//! also the long-lived coordinator and API server, whose resident memory huge pages would
//! raise (75 -> 85 MB in the Distributed Map loadtest) for no speed. So the process starts
//! with huge pages off ([`set`]`(false)`, the kernel's per-process switch, which also
//! overrides jemalloc's `madvise`) and only the embedded batch commands turn them back on.

/// Allows (`true`) or forbids (`false`) transparent huge pages for this whole process and
/// the children it starts (`prctl(PR_SET_THP_DISABLE)`). Memory already backed by huge pages
/// stays so. Best effort: a kernel without the switch leaves the system's setting in force.
pub fn set(allowed: bool) {
    #[cfg(target_os = "linux")]
    {
        let disable: libc::c_ulong = if allowed { 0 } else { 1 };
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, disable, 0, 0, 0) };
        if rc != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "cannot switch transparent huge pages"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = allowed;
}

/// Whether transparent huge pages are allowed for this process (`None` where the kernel
/// cannot say).
pub fn allowed() -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: as above; PR_GET_THP_DISABLE returns the flag.
        let rc = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        if rc < 0 { None } else { Some(rc == 0) }
    }
    #[cfg(not(target_os = "linux"))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn the_switch_reaches_the_kernel() {
        set(false);
        assert_eq!(allowed(), Some(false));
        set(true);
        assert_eq!(allowed(), Some(true));
    }
}
