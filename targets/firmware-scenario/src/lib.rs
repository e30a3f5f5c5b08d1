//! What the QEMU firmware images share, so that the ARM (mps2-an386) and RISC-V (virt) images
//! run the *same* gate through the *same* scenario:
//!
//! - [`net`]: the in-memory TCP stack ([`net::MemNet`]) reqwless talks to;
//! - [`responder`] + [`backend`]: the scripted HTTP backend on MemNet's server side;
//! - [`scenario`]: the six chapters (grant, short outage held, fail closed at the deadline,
//!   recovery, revocation, 401) with an assertion on every state;
//! - [`stack`]: per-task stack peaks by painting;
//! - [`app`]: the statics, the one place the driver is configured and built
//!   ([`app::build_driver`]), and the tasks; [`app::start`] spawns them.
//!
//! An image supplies a [`Board`] (console, exit, stack region) and an embassy time driver,
//! then calls [`app::start`]. The scenario's verdict leaves through [`Board::exit`].

#![no_std]
#![deny(unsafe_code)]

pub mod app;
pub mod backend;
pub mod net;
pub mod responder;
pub mod scenario;
pub mod stack;

use core::cell::Cell;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex as BlockingMutex;

/// What differs between the images: where text goes, how the run ends, where the stack is.
pub struct Board {
    /// Shown in the first line of the run, e.g. `QEMU mps2-an386 (Cortex-M4F)`.
    pub name: &'static str,
    /// Prints one line (the newline is the board's to add).
    pub print_line: fn(core::fmt::Arguments<'_>),
    /// Ends the run: QEMU exits 0 when `passed`, non-zero otherwise.
    pub exit: fn(passed: bool) -> !,
    /// The stack region `[bottom, top)`, word aligned; every task runs on it.
    pub stack_region: fn() -> (usize, usize),
    /// The current stack pointer.
    pub stack_pointer: fn() -> usize,
    /// The word the unused stack is painted with (see [`stack`]).
    pub stack_paint: u32,
}

static BOARD: BlockingMutex<CriticalSectionRawMutex, Cell<Option<&'static Board>>> =
    BlockingMutex::new(Cell::new(None));

/// Registers the board. Call first thing in `main`, before [`app::start`].
pub fn set_board(board: &'static Board) {
    BOARD.lock(|b| b.set(Some(board)));
}

/// The registered board.
///
/// # Panics
/// If [`set_board`] was not called: a programming error of the image, caught on its first run.
pub fn board() -> &'static Board {
    BOARD
        .lock(|b| b.get())
        .expect("set_board() is called before anything prints or measures")
}

/// Prints one line on the board's console: `say!("x = {}", x)`.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        ($crate::board().print_line)(format_args!($($arg)*))
    };
}
