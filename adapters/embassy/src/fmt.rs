//! Logging shim: the adapter logs through these macros, which route to `defmt` (firmware),
//! `log` (host) or nowhere. Arguments are evaluated in every case, so a build without logging
//! has the same side effects as one with it. Only `{}` placeholders are used, which both
//! back-ends accept; arguments must implement both `defmt::Format` and `Display` where both
//! can be enabled.
#![allow(unused_macros)]

#[cfg(all(feature = "defmt", feature = "log"))]
compile_error!("accessgate-embassy: enable at most one of the features `defmt` and `log`");

macro_rules! ag_log {
    ($level:ident, $s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::$level!($s $(, $x)*);
        #[cfg(feature = "log")]
        ::log::$level!($s $(, $x)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        { $( let _ = &$x; )* }
    }};
}

macro_rules! trace {
    ($($t:tt)*) => { ag_log!(trace, $($t)*) };
}
macro_rules! debug {
    ($($t:tt)*) => { ag_log!(debug, $($t)*) };
}
macro_rules! info {
    ($($t:tt)*) => { ag_log!(info, $($t)*) };
}
macro_rules! warn {
    ($($t:tt)*) => { ag_log!(warn, $($t)*) };
}
