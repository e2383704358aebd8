//! A test helper the seccomp tests run inside containers: makes the raw
//! system call numbered by its argument (all arguments zero) and prints
//! the errno it got, or 0. Not part of berth.

fn main() {
    let nr: libc::c_long = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .expect("usage: syscall_probe NR");
    // SAFETY: a raw syscall with zero arguments; the tests pick numbers that
    // fail harmlessly (or are filtered) with those.
    let r = unsafe { libc::syscall(nr, 0, 0, 0, 0, 0, 0) };
    let errno = if r < 0 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    } else {
        0
    };
    println!("{errno}");
}
