//! Stack use, measured by painting, overall and per embassy task.
//!
//! The unused stack is filled with the board's paint word ([`crate::Board::stack_paint`]):
//! cortex-m-rt's `paint-stack` does it at reset on the ARM image, [`paint_unused`] at the top
//! of `main` on the RISC-V one. The deepest the stack ever reached is the lowest word no
//! longer holding the paint.
//!
//! Every embassy task runs on this one stack (its future lives in static task storage; only
//! the frames of a `poll` are on the stack). To tell tasks apart, each task body is wrapped
//! in [`measured`]: before every poll of the wrapped future it paints the dead part of the
//! stack again, after it it finds the lowest dirty word and charges that depth to the task.
//! Interrupt handlers (the timer's) run on the same stack and are charged to the task they
//! interrupted; they are small.

use core::cell::Cell;
use core::future::{poll_fn, Future};
use core::pin::Pin;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;

use crate::board;

/// Bytes left unpainted just below the stack pointer of [`repaint_below_sp`] itself.
const REPAINT_MARGIN: usize = 64;

/// The lowest address of the stack region that no longer holds the paint (`top` if none).
#[allow(unsafe_code)]
fn low_water() -> usize {
    let b = board();
    let (bottom, top) = (b.stack_region)();
    let mut addr = bottom;
    while addr < top {
        // SAFETY: [bottom, top) is RAM reserved for the stack by the linker script, word
        // aligned (Board::stack_region); reading a word of it has no side effect. Volatile so
        // the scan is not elided.
        let word = unsafe { core::ptr::read_volatile(addr as *const u32) };
        if word != b.stack_paint {
            break;
        }
        addr += 4;
    }
    addr
}

/// Paints `[from, SP - REPAINT_MARGIN)` again. Everything below the stack pointer is dead:
/// an interrupt taken meanwhile pushes its frames there and pops them before this code
/// resumes, so at worst part of its use goes unmeasured.
#[allow(unsafe_code)]
#[inline(never)]
fn repaint_below_sp(from: usize) {
    let b = board();
    let sp = (b.stack_pointer)();
    let end = sp.saturating_sub(REPAINT_MARGIN) & !3;
    let mut addr = from & !3;
    while addr < end {
        // SAFETY: `addr` lies in the stack region (from >= its bottom) below this function's
        // frame: no live data is there (see above). Volatile: the stores must happen.
        unsafe { core::ptr::write_volatile(addr as *mut u32, b.stack_paint) };
        addr += 4;
    }
}

/// Paints the whole unused stack (below the caller's frame). For boards whose runtime does
/// not paint at reset; call at the top of `main`, after [`crate::set_board`].
pub fn paint_unused() {
    repaint_below_sp((board().stack_region)().0);
}

/// Lowest dirty address ever seen (the overall high-water mark of the stack).
static DEEPEST: Mutex<CriticalSectionRawMutex, Cell<usize>> = Mutex::new(Cell::new(usize::MAX));

/// Finds the lowest dirty address and folds it into [`DEEPEST`].
fn scan() -> usize {
    let low = low_water();
    DEEPEST.lock(|d| d.set(d.get().min(low)));
    low
}

/// Peak stack depth reached while one task was being polled.
pub struct TaskStack {
    peak: Mutex<CriticalSectionRawMutex, Cell<usize>>,
}

impl Default for TaskStack {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskStack {
    pub const fn new() -> Self {
        Self {
            peak: Mutex::new(Cell::new(0)),
        }
    }

    /// Bytes from the top of the stack to the deepest word any poll of the task dirtied.
    /// Includes the frames above the task (`main`, the executor's loop: a few hundred bytes)
    /// and the task's own `TaskStorage::poll` frame (the inlined state machine).
    pub fn peak(&self) -> usize {
        self.peak.lock(|p| p.get())
    }
}

/// Runs `fut`, recording in `stats` how deep the stack goes while it is polled.
///
/// Before each poll, every dirty word below the current stack pointer is painted again, so
/// what the poll leaves dirty is its own (plus any interrupt taken meanwhile).
///
/// Takes the future pinned by the caller: an `async fn` keeps its arguments apart from its
/// locals, so taking `F` by value and pinning it here would store the future twice.
pub async fn measured<F: Future>(stats: &TaskStack, mut fut: Pin<&mut F>) -> F::Output {
    let (_, top) = (board().stack_region)();
    poll_fn(|cx| {
        repaint_below_sp(scan());
        let r = fut.as_mut().poll(cx);
        let depth = top - scan();
        stats.peak.lock(|p| p.set(p.get().max(depth)));
        r
    })
    .await
}

/// `(peak bytes used overall, size of the stack region)`.
pub fn overall() -> (usize, usize) {
    let deepest = scan().min(DEEPEST.lock(|d| d.get()));
    let (bottom, top) = (board().stack_region)();
    (top - deepest, top - bottom)
}
