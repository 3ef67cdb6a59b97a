//! The WAL index (the `-shm` file beside the state file) is shared memory: SQLite
//! maps the file and writes it through the mapping, at every transaction. Once the
//! file can no longer be written (made immutable with `chattr +i`, its file system
//! remounted read-only), the kernel answers the next write to one of its pages with
//! SIGBUS, and the service died of it at its next commit without a word in its log
//! (SQLite documents that memory-mapped I/O turns I/O errors into signals).
//!
//! A SIGBUS handler gives such a page this process's own copy instead (the write
//! lands there, the file keeps what it had) and marks the index lost. The store
//! then refuses writes and stops checkpointing, answers the commit that met the
//! fault with an error (so its events are not acknowledged), and goes on reading
//! through its own copy; the checkpoint thread opens the store afresh once the
//! file can be written ([`super::renew`]), first invalidating the index on disk so
//! that it is rebuilt from the log, which holds every commit acknowledged.
//!
//! Only a write fault on a page that can still be read is taken for this: a shared
//! mapping of a file that cannot be written, and in pcsync SQLite's index is the
//! only such mapping. The mark is the process's: a process has one store (tests
//! that fault an index run in a process of their own). Any other SIGBUS goes to
//! the handler that was there before, after a line on stderr saying what it was.

/// Makes a write fault in the WAL index an error instead of a crash, once per
/// process.
pub(super) fn guard() {
    #[cfg(target_os = "linux")]
    {
        static INSTALLED: std::sync::Once = std::sync::Once::new();
        INSTALLED.call_once(linux::install);
    }
}

/// Whether a write to the WAL index failed since the last [`reset`].
pub(super) fn lost() -> bool {
    #[cfg(target_os = "linux")]
    {
        linux::LOST.load(std::sync::atomic::Ordering::SeqCst)
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Forgets the pages taken over, once every connection that mapped them is closed
/// (their addresses may be mapped again).
pub(super) fn reset() {
    #[cfg(target_os = "linux")]
    linux::reset()
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod linux {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    pub(super) static LOST: AtomicBool = AtomicBool::new(false);

    /// Pages already taken over (0: a free slot), so that a second thread faulting
    /// on the same page does not replace the first one's copy.
    static TAKEN: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];

    /// One handler at a time takes a page over.
    static BUSY: AtomicBool = AtomicBool::new(false);

    static PAGE: AtomicUsize = AtomicUsize::new(0);

    /// What handled SIGBUS before.
    struct Previous(libc::sigaction);
    // SAFETY: a plain description of a signal action (a handler address, flags and
    // a mask), only read after it is set.
    unsafe impl Sync for Previous {}
    unsafe impl Send for Previous {}
    static PREVIOUS: OnceLock<Previous> = OnceLock::new();

    pub(super) fn install() {
        // SAFETY: sysconf, sigemptyset and sigaction are given valid pointers to
        // values on this stack; the handler only makes async-signal-safe calls.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE);
            PAGE.store(
                usize::try_from(page).unwrap_or(4096).max(4096),
                Ordering::SeqCst,
            );
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut previous) != 0 {
                return;
            }
            let _ = PREVIOUS.set(Previous(previous));
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) != 0 {
                tracing::debug!(
                    "no SIGBUS handler: a WAL index that cannot be written ends the process"
                );
            }
        }
    }

    pub(super) fn reset() {
        for slot in &TAKEN {
            slot.store(0, Ordering::SeqCst);
        }
        LOST.store(false, Ordering::SeqCst);
    }

    extern "C" fn on_sigbus(
        signal: libc::c_int,
        info: *mut libc::siginfo_t,
        _context: *mut libc::c_void,
    ) {
        // SAFETY: the kernel passes a valid siginfo; everything called is
        // async-signal-safe (atomics, mmap, mremap, munmap, process_vm_readv,
        // write, sigaction).
        unsafe {
            let address = (*info).si_addr() as usize;
            if (*info).si_code == libc::BUS_ADRERR && take_over(address) {
                LOST.store(true, Ordering::SeqCst);
                return;
            }
            let message = b"pcsync: SIGBUS: a memory-mapped file could not be read \
                (truncated, or on a failing device)\n";
            libc::write(2, message.as_ptr().cast(), message.len());
            // On return the fault happens again, under the action there was before.
            match PREVIOUS.get() {
                Some(Previous(previous)) => {
                    libc::sigaction(signal, previous, std::ptr::null_mut());
                }
                None => {
                    libc::signal(signal, libc::SIG_DFL);
                }
            }
        }
    }

    /// Puts a private copy of the page at `address` in place of the file's, when
    /// it can be read; whether the faulting write can now go ahead.
    unsafe fn take_over(address: usize) -> bool {
        let size = PAGE.load(Ordering::SeqCst);
        let page = address & !(size - 1);
        while BUSY
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: see `copy_in`.
        let done = TAKEN.iter().any(|s| s.load(Ordering::SeqCst) == page)
            || unsafe { copy_in(page, size) };
        BUSY.store(false, Ordering::Release);
        done
    }

    /// The page's contents, read by the kernel (a page that cannot be read fails
    /// here instead of faulting again in the handler), into fresh anonymous memory
    /// that then replaces it at its address, readable and writable as it was.
    unsafe fn copy_in(page: usize, size: usize) -> bool {
        let Some(slot) = TAKEN.iter().find(|s| s.load(Ordering::SeqCst) == 0) else {
            return false;
        };
        // SAFETY: a new private mapping, the page copied into it by the kernel, and
        // then moved over the page; the page belonged to a shared file mapping of
        // this process that SQLite alone uses.
        unsafe {
            let copy = libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if copy == libc::MAP_FAILED {
                return false;
            }
            let local = libc::iovec {
                iov_base: copy,
                iov_len: size,
            };
            let remote = libc::iovec {
                iov_base: page as *mut libc::c_void,
                iov_len: size,
            };
            if libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) != size as isize
                || libc::mremap(
                    copy,
                    size,
                    size,
                    libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                    page as *mut libc::c_void,
                ) == libc::MAP_FAILED
            {
                libc::munmap(copy, size);
                return false;
            }
        }
        slot.store(page, Ordering::SeqCst);
        true
    }
}
