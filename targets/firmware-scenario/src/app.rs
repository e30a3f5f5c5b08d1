//! The run: statics, the gate's configuration, the one place the driver is built, the tasks.
//!
//! Tasks on one thread-mode executor, all futures in static task storage:
//! - `driver_task`: `Driver::run()` (session loop + check lane + refresh lane);
//! - `responder_task`: the backend;
//! - `scenario_task`: the chapters; ends the run through [`Board::exit`](crate::Board::exit),
//!   passed only when all held;
//! - `watchdog_task`: fails the run if the scenario has not finished after [`WATCHDOG`].
//!
//! Timings are scaled down (200 ms per attempt, 1 s budget...) so the run takes seconds.

use core::net::{IpAddr, Ipv4Addr};
use core::pin::pin;

use accessgate::{Duration, Probing, Retries, SessionConfig};
use accessgate_embassy::{
    ConfigError, Driver, DriverBuffers, DriverConfig, Link, PlainCheckStorage, Seeds, Transport,
};
use embassy_executor::{SpawnError, Spawner};
use static_cell::StaticCell;

use crate::backend::{Backend, BackendScript};
use crate::net::{FixedDns, MemNet};
use crate::stack::{self, TaskStack};
use crate::{board, say, scenario};

/// The link's mutex: tasks share it from one executor, but a `static` needs `Sync`.
pub type Mutex = embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
/// The app side of the gate (default token capacity: 1 KiB).
pub type GateLink = Link<'static, Mutex>;
/// 4 links of 512 bytes per direction: one live connection, others closing.
pub type Net = MemNet<512, 4>;
/// The driver as both images run it.
pub type GateDriver = Driver<'static, Mutex, Net, FixedDns>;

/// The check endpoint; `FixedDns` resolves the host.
pub const URL: &str = "http://backend.local/api/code/invites/check-access/";
/// What the scripted backend expects (backend-contract.md).
pub const PATH: &str = "/api/code/invites/check-access/";
pub const AUTHORIZATION: &str = "Bearer demo-access-token";
/// Where `FixedDns` sends every name; only shows up in `Incoming::local_addr`.
const BACKEND_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2));

/// Fail-closed budget (default 120 s, scaled down).
pub const BUDGET: Duration = Duration::from_secs(1);
/// Token lifetime: long enough that no refresh falls due during the run.
pub const HOUR: Duration = Duration::from_secs(3600);
/// Least unused stack a passing run must leave.
const STACK_HEADROOM: usize = 4096;
/// The whole scenario must end within this much embassy time.
pub const WATCHDOG: embassy_time::Duration = embassy_time::Duration::from_secs(20);

/// behaviour.md's defaults, scaled down so a run takes a few seconds.
pub const fn session_config() -> SessionConfig {
    let mut s = SessionConfig::DEFAULT;
    s.gate.attempt_timeout = Duration::from_millis(200);
    s.gate.budget = BUDGET;
    s.gate.retry = Retries {
        spread: Duration::from_millis(500),
        final_window: Duration::from_millis(200),
        count: 0,
    };
    s.gate.probe = Probing {
        period: Duration::from_millis(500),
        ramp: Duration::from_millis(200),
        ramp_probes: 1,
    };
    s.gate.min_recheck_interval = Duration::from_millis(100);
    s
}

pub static NET: Net = Net::new();
pub static DNS: FixedDns = FixedDns(BACKEND_ADDR);
pub static LINK: GateLink = Link::new();
pub static BACKEND: Backend = Backend::new(PATH, AUTHORIZATION);
static CHECK_BUFFERS: StaticCell<PlainCheckStorage> = StaticCell::new();

static DRIVER_STACK: TaskStack = TaskStack::new();
static RESPONDER_STACK: TaskStack = TaskStack::new();
static SCENARIO_STACK: TaskStack = TaskStack::new();

/// Builds the driver over MemNet: the only place the images construct one, so a change to
/// the adapter's `DriverConfig` / `Driver::new` is one edit here.
///
/// Plain HTTP (the adapter is built without its `tls` feature). A fixed seed: a reproducible
/// run; a device draws it from a hardware RNG (R6). Call once (the lane buffers are a
/// `StaticCell`).
pub fn build_driver() -> Result<GateDriver, ConfigError> {
    let config = DriverConfig::new(URL, Transport::PlainHttp).with_session(session_config());
    // Plain HTTP: no TLS seed.
    let seeds = Seeds::new(0x5eed_ac55_6a7e);
    let buffers = DriverBuffers::new(CHECK_BUFFERS.init(PlainCheckStorage::new()).buffers());
    GateDriver::new(&LINK, &NET, &DNS, config, buffers, seeds)
}

#[embassy_executor::task]
async fn driver_task(driver: GateDriver) -> ! {
    stack::measured(&DRIVER_STACK, pin!(driver.run())).await
}

#[embassy_executor::task]
async fn responder_task() -> ! {
    let mut script = BackendScript(&BACKEND);
    let serve = pin!(crate::responder::serve(&NET, &mut script));
    stack::measured(&RESPONDER_STACK, serve).await
}

#[embassy_executor::task]
async fn scenario_task() {
    let started = embassy_time::Instant::now();
    let result = stack::measured(&SCENARIO_STACK, pin!(scenario::run(&LINK, &BACKEND))).await;
    let took = started.elapsed().as_millis();
    let (peak, size) = stack::overall();
    say!(
        "stack: peak {} of {} bytes overall (all tasks share the one stack)",
        peak,
        size
    );
    for (name, stats) in [
        ("driver", &DRIVER_STACK),
        ("responder", &RESPONDER_STACK),
        ("scenario", &SCENARIO_STACK),
    ] {
        say!(
            "stack: {} task peak {} bytes (from the top, executor frames included)",
            name,
            stats.peak()
        );
    }
    // The stack grows down towards the statics: a peak this close to its end may already
    // have overwritten them.
    let result = result.and_then(|()| {
        if peak + STACK_HEADROOM > size {
            Err(scenario::Fail::new(format_args!(
                "stack peak {peak} B leaves less than {STACK_HEADROOM} B of the {size} B stack"
            )))
        } else {
            Ok(())
        }
    });
    match result {
        Ok(()) => {
            say!("PASS: all 6 chapters held, {} ms of embassy time", took);
            (board().exit)(true)
        }
        Err(fail) => {
            fail.print();
            say!("(after {} ms of embassy time)", took);
            (board().exit)(false)
        }
    }
}

#[embassy_executor::task]
async fn watchdog_task() {
    embassy_time::Timer::after(WATCHDOG).await;
    say!(
        "FAIL: watchdog: the scenario did not finish within {} s",
        WATCHDOG.as_secs()
    );
    (board().exit)(false)
}

/// Builds the driver and spawns every task. The board must be set ([`crate::set_board`]) and
/// the time driver running. Ends the run (failed) if the driver refuses its configuration.
pub fn start(spawner: Spawner) {
    let s = session_config();
    say!(
        "accessgate on {}: attempt timeout {} ms, budget {} ms, retries over {} ms + final {} ms, probes every {} ms after {} in {} ms",
        board().name,
        s.gate.attempt_timeout.as_millis(),
        BUDGET.as_millis(),
        s.gate.retry.spread.as_millis(),
        s.gate.retry.final_window.as_millis(),
        s.gate.probe.period.as_millis(),
        s.gate.probe.ramp_probes,
        s.gate.probe.ramp.as_millis(),
    );
    let driver = match build_driver() {
        Ok(d) => d,
        Err(e) => {
            say!("FAIL: driver configuration: {}", e);
            (board().exit)(false)
        }
    };
    say!(
        "sizes: driver {} B, link {} B, check buffers {} B (the driver task's storage: see FIGURES.md)",
        core::mem::size_of::<GateDriver>(),
        core::mem::size_of::<GateLink>(),
        core::mem::size_of::<PlainCheckStorage>(),
    );
    if let Err(e) = spawn_all(spawner, driver) {
        say!("FAIL: spawning the tasks: {:?}", e);
        (board().exit)(false)
    }
}

fn spawn_all(spawner: Spawner, driver: GateDriver) -> Result<(), SpawnError> {
    spawner.spawn(responder_task()?);
    spawner.spawn(driver_task(driver)?);
    spawner.spawn(watchdog_task()?);
    spawner.spawn(scenario_task()?);
    Ok(())
}
