//! Writing to standard output without panicking.
//!
//! `println!` panics when standard output is a closed pipe (`strangler … |
//! head`, or a supervisor that stopped reading). For a command that is
//! serving traffic, such as `strangler demo`, that panic would stop every
//! server, so all output goes through these macros, which drop what cannot
//! be written.

/// Like `println!`, but a closed standard output is not an error.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Like `print!`, but a closed standard output is not an error.
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub(crate) use {say, say_raw};
