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

/// Pages out this program's read-only mappings and drops the resident
/// text of every library it maps.
pub fn release_code_pages() {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let exe = exe.to_string_lossy().into_owned();
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(range), Some(perms), Some(path)) = (f.first(), f.get(1), f.get(5)) else {
            continue;
        };
        if perms.contains('w') || !path.starts_with('/') {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        let advice = if *perms == "r-xp" {
            // Text is never written: dropping our references loses nothing.
            libc::MADV_DONTNEED
        } else if *path == exe {
            // Read-only data may hold relocated (private, dirty) pages,
            // which PAGEOUT leaves alone; it only reclaims clean ones.
            libc::MADV_PAGEOUT
        } else {
            continue;
        };
        // SAFETY: advice on file mappings of our own process that are not
        // writable; neither advice changes what a later access reads.
        unsafe { libc::madvise(a as *mut libc::c_void, b - a, advice) };
    }
}
