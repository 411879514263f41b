//! Typed errors for every kind of bad path, and access hints checked against the kernel's
//! view in `/proc/self/smaps`.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::{MapFile, page, smaps_under, write};
use mm_mmap::{Access, MmapCache, MmapCacheConfig, MmapError};

/// True (and says so) when the test runs under a sanitizer, which makes `mlock` a no-op that
/// reports success: AddressSanitizer intercepts it, so neither locked pages nor the
/// RLIMIT_MEMLOCK failure can be observed.
fn mlock_is_intercepted() -> bool {
    let under = std::env::var_os("MM_UNDER_SANITIZER").is_some();
    if under {
        eprintln!("skipped: MM_UNDER_SANITIZER is set and the sanitizer intercepts mlock");
    }
    under
}

fn assert_nothing_cached(c: &MmapCache) {
    let s = c.stats();
    assert_eq!((s.entries, s.held_bytes, s.outstanding_bytes), (0, 0, 0));
}

#[test]
fn missing_file_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let c = MmapCache::default();
    let err = c.map_file(&dir.path().join("nope")).unwrap_err();
    assert!(
        matches!(err, MmapError::NotFound { ref path } if path.ends_with("nope")),
        "{err}"
    );
    assert!(err.to_string().contains("no such file"));
    assert_nothing_cached(&c);
}

#[test]
fn empty_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "empty", 0, 0);
    let c = MmapCache::default();
    assert!(matches!(
        c.map_file(&path),
        Err(MmapError::EmptyFile { .. })
    ));
    assert_nothing_cached(&c);
}

#[test]
fn directory_is_not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = MmapCache::default();
    match c.map_file(dir.path()) {
        Err(MmapError::NotRegularFile { kind, .. }) => assert_eq!(kind, "directory"),
        other => panic!("expected NotRegularFile, got {other:?}"),
    }
    assert_nothing_cached(&c);
}

#[test]
fn fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fifo");
    let cpath = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `cpath` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo failed");
    // A blocking open of a FIFO with no writer would hang this test forever.
    let c = MmapCache::default();
    match c.map_file(&path) {
        Err(MmapError::NotRegularFile { kind, .. }) => assert_eq!(kind, "fifo"),
        other => panic!("expected NotRegularFile, got {other:?}"),
    }
    assert_nothing_cached(&c);
}

#[test]
fn character_device_is_refused() {
    let c = MmapCache::default();
    match c.map_file(Path::new("/dev/null")) {
        Err(MmapError::NotRegularFile { kind, .. }) => assert_eq!(kind, "character device"),
        other => panic!("expected NotRegularFile, got {other:?}"),
    }
}

const CAP_DAC_OVERRIDE: u32 = 1;
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_IPC_LOCK: u32 = 14;

/// Drops capabilities from the calling thread's effective set, so that a root test thread
/// is subject to the checks they bypass. Linux credentials are per thread, and the raw
/// `capset` system call changes only the caller's.
fn drop_caps_for_this_thread(caps: &[u32]) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget with a version-3 header reads into an array of two `Data`, the layout
    // of `struct __user_cap_data_struct[2]`; both pointers are valid for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    assert_eq!(rc, 0, "capget failed");
    for cap in caps {
        data[0].effective &= !(1 << cap);
    }
    // SAFETY: as above; capset only reads the two structures.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    assert_eq!(rc, 0, "capset failed");
}

#[test]
fn unreadable_file_is_permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "secret", page(), 1);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    let c = MmapCache::default();
    // Root bypasses permission bits; run the get on a thread without that capability.
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            drop_caps_for_this_thread(&[CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH]);
            c.map_file(&path).map(|_| ())
        })
        .join()
        .unwrap()
    });
    match result {
        Err(MmapError::PermissionDenied { path: p }) => assert_eq!(p, path),
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    assert_nothing_cached(&c);
}

#[test]
fn config_advice_shows_in_vm_flags() {
    let dir = tempfile::tempdir().unwrap();
    let seq = write(dir.path(), "seq", 4 * page(), 1);
    let rnd = write(dir.path(), "rnd", 4 * page(), 2);
    let c_seq = MmapCache::new(MmapCacheConfig::default().with_advice(Some(Access::Sequential)));
    let c_rnd = MmapCache::new(MmapCacheConfig::default().with_advice(Some(Access::Random)));
    let (_s, _r) = (c_seq.map_file(&seq).unwrap(), c_rnd.map_file(&rnd).unwrap());
    let smaps = smaps_under(dir.path());
    let flags = |p: &Path| {
        smaps
            .iter()
            .find(|e| e.path == p)
            .expect("mapping")
            .vm_flags
            .clone()
    };
    // smaps VmFlags: "sr" = sequential read advised, "rr" = random read advised.
    assert!(flags(&seq).contains(&"sr".to_owned()), "{:?}", flags(&seq));
    assert!(flags(&rnd).contains(&"rr".to_owned()), "{:?}", flags(&rnd));
}

#[test]
fn advise_changes_hint_and_checks_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "f", 4 * page(), 1);
    let c = MmapCache::default();
    let map = c.map_file(&path).unwrap();
    map.advise(Access::Random).unwrap();
    let has = |flag: &str| {
        smaps_under(dir.path())[0]
            .vm_flags
            .iter()
            .any(|f| f == flag)
    };
    assert!(has("rr"));
    map.advise(Access::Normal).unwrap();
    assert!(!has("rr") && !has("sr"));
    map.advise(Access::WillNeed).unwrap();
    map.advise_range(Access::WillNeed, 0, page() as usize)
        .unwrap();
    let out_of_range = map.advise_range(Access::WillNeed, 4 * page() as usize, 1);
    assert!(matches!(out_of_range, Err(MmapError::Advise { .. })));
    assert!(matches!(
        map.advise_range(Access::Random, usize::MAX, 2),
        Err(MmapError::Advise { .. })
    ));
}

#[test]
fn lock_and_populate_make_pages_resident() {
    if mlock_is_intercepted() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "locked", 8 * page(), 3);
    let c = MmapCache::new(
        MmapCacheConfig::default()
            .with_lock(true)
            .with_populate(true),
    );
    match c.map_file(&path) {
        Ok(map) => {
            let entry = smaps_under(dir.path()).pop().expect("mapping");
            assert!(
                entry.vm_flags.contains(&"lo".to_owned()),
                "{:?}",
                entry.vm_flags
            );
            assert_eq!(entry.locked_bytes, 8 * page());
            assert_eq!(map[0], 3);
        }
        // Unprivileged with a small RLIMIT_MEMLOCK: the typed error, and nothing cached.
        Err(MmapError::Lock { len, .. }) => {
            assert_eq!(len, 8 * page());
            assert_nothing_cached(&c);
        }
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[test]
fn lock_failure_is_a_typed_error_and_caches_nothing() {
    if mlock_is_intercepted() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "big", 16 * page(), 3);
    let c = MmapCache::new(MmapCacheConfig::default().with_lock(true));
    let limit = libc::rlimit {
        rlim_cur: page(),
        rlim_max: libc::RLIM_INFINITY,
    };
    let mut saved = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both pointers are valid `rlimit`s for the duration of the calls.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut saved), 0);
        // Keep the hard limit so it can be restored; only the soft limit shrinks.
        let limit = libc::rlimit {
            rlim_max: saved.rlim_max,
            ..limit
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit), 0);
    }
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            // Without CAP_IPC_LOCK, mlock is bound by RLIMIT_MEMLOCK (one page here).
            drop_caps_for_this_thread(&[CAP_IPC_LOCK]);
            c.map_file(&path).map(|_| ())
        })
        .join()
        .unwrap()
    });
    // SAFETY: `saved` is the valid limit read above.
    unsafe { assert_eq!(libc::setrlimit(libc::RLIMIT_MEMLOCK, &saved), 0) };
    match result {
        Err(MmapError::Lock { len, .. }) => assert_eq!(len, 16 * page()),
        other => panic!("expected a Lock error, got {other:?}"),
    }
    assert_nothing_cached(&c);
    assert!(
        smaps_under(dir.path()).is_empty(),
        "the failed map must be unmapped"
    );
}

#[test]
fn unmappable_regular_file_is_an_io_error_naming_mmap() {
    // sysfs attributes are regular files with a nominal 4096-byte size but no mmap
    // support: the kernel answers ENODEV.
    let path = Path::new("/sys/kernel/mm/transparent_hugepage/enabled");
    if !path.exists() {
        eprintln!("skipped: {} does not exist on this kernel", path.display());
        return;
    }
    let c = MmapCache::default();
    match c.map_file(path) {
        Err(MmapError::Io { op, source, .. }) => {
            assert_eq!(op, "mmap");
            assert_eq!(source.raw_os_error(), Some(libc::ENODEV));
        }
        other => panic!("expected an Io error from mmap, got {other:?}"),
    }
    assert_nothing_cached(&c);
}

/// The hazard the `# Safety` and `# SIGBUS` sections of `MmapCache::get` document is real:
/// a map of a file truncated behind its back kills the process with `SIGBUS` on the next
/// read of a vanished page. Runs in a child process (this test binary, re-run on this test
/// alone), which breaks the contract on purpose and must die of the signal.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot map files")]
fn truncating_a_mapped_file_raises_sigbus() {
    use std::os::unix::process::ExitStatusExt;
    const CHILD: &str = "MM_MMAP_SIGBUS_CHILD";
    if let Some(dir) = std::env::var_os(CHILD) {
        let path = write(Path::new(&dir), "shrinks", 4 * page(), 7);
        let c = MmapCache::default();
        let map = c.map_file(&path).unwrap();
        assert_eq!(map[3 * page() as usize], 7);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        // The page is gone: this read raises SIGBUS. Reaching the exit is the failure.
        let byte = std::hint::black_box(&map[..])[3 * page() as usize];
        eprintln!("read {byte} from a truncated map");
        std::process::exit(0);
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "truncating_a_mapped_file_raises_sigbus",
            "--nocapture",
        ])
        .env(CHILD, dir.path())
        .output()
        .unwrap();
    if std::env::var_os("MM_UNDER_SANITIZER").is_some() {
        // The sanitizer catches the signal itself, reports it and aborts.
        assert!(!out.status.success(), "child survived: {:?}", out.status);
        return;
    }
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGBUS),
        "child: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
