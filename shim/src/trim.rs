//! An idle shim's resident memory is mostly the pages of its own program
//! that starting a container touched (the ttrpc, protobuf and process
//! code, faulted in 64 KiB at a time). Once a container is running, the
//! shim only waits; handing those clean, file-backed pages back to the page
//! cache (MADV_PAGEOUT, Linux 5.4+) keeps the shim small, and the next rpc
//! faults in what it needs from the cache. Pages other processes also map
//! (libc, another shim's text) stay in the page cache either way; the
//! shim only drops its own references to their text (MADV_DONTNEED on
//! executable mappings, which are never written, so nothing is lost) and
//! faults back in the little an rpc needs.

/// Pages out this program's read-only mappings once the rpcs that follow a
/// start (State, Wait, event publishing) have run.
pub fn release_code_pages_soon() {
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_secs(1));
        release_code_pages();
    });
}

/// Pages out this program's read-only mappings.
pub fn release_code_pages() {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let exe = exe.to_string_lossy().into_owned();
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        if perms.contains('w') || line.split_whitespace().nth(5) != Some(exe.as_str()) {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        // SAFETY: advice on a mapping of our own executable; MADV_PAGEOUT
        // never changes its contents, only whether they are resident.
        unsafe { libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_PAGEOUT) };
    }
}
