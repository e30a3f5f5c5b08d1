//! ESP32-C3 firmware running the access gate: the embassy adapter's [`Driver`] (accessgate
//! core + reqwless + embedded-tls) over embassy-net on the chip's Wi-Fi (esp-radio, station
//! mode), with `TcpClient` + `DnsSocket` as its network. The embassy executor and time
//! driver come from esp-rtos (the scheduler esp-radio needs). Everything a deployment changes
//! is in [`config`]. Logs go to the USB serial console (esp-println).
//!
//! At boot the board joins [`config::WIFI_SSID`], then restores the session of
//! [`config::ACCESS_TOKEN`] once it has an address; the gate checks at once (R3), then on
//! token refreshes, every [`config::RECHECK_PERIOD`] and when the BOOT button (GPIO9) is
//! pressed. Wi-Fi drops are the gate's transient failures: it holds, then fails closed at its
//! deadline (R4, R5), and recovers when the network and backend are back (R7).
//!
//! Transport: HTTPS with the server certificate verified against [`config::TLS_CA_DER`].
//! Without a CA the gate is **not started** (error log + LED pattern below); plain HTTP only
//! when [`config::ALLOW_PLAIN_HTTP`] says so explicitly. Never unverified TLS.
//!
//! One status LED (GPIO8, see [`config::LED_ACTIVE_LOW`]):
//!
//! | state | LED |
//! |---|---|
//! | booting, Wi-Fi or address not up, not signed in yet | one short flash a second |
//! | `Unknown`, signed in: first check pending ("checking") | fast blink (4 Hz) |
//! | `Granted` | on |
//! | `Granted`, re-verifying (transient failures, before the fail-closed deadline) | on, dark 100 ms a second |
//! | `Denied` by the server | off |
//! | `Denied`, failed closed, probing for recovery | two short flashes every 2 s |
//! | signed out (401, rejected refresh): sign-in needed | three short flashes every 2 s |
//! | configuration error: gate not started | very fast blink (10 Hz) |

#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod config;

use accessgate::{Access, Status};
use accessgate_embassy::{
    write_event_text, CheckStorage, Command, Driver, DriverBuffers, DriverConfig, Link, RefreshStorage,
    Seeds, Snapshot, Transport,
};
use embassy_executor::Spawner;
use embassy_futures::select::{select, Either};
use embassy_net::dns::DnsSocket;
use embassy_net::tcp::client::{TcpClient, TcpClientState};
use embassy_net::{Ipv4Address, Ipv4Cidr, StackResources, StaticConfigV4};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::{Duration, Timer};
use esp_hal::clock::CpuClock;
use esp_hal::gpio::{Input, InputConfig, Level, Output, OutputConfig, Pull};
use esp_hal::rng::Rng;
use esp_hal::timer::timg::TimerGroup;
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{AuthenticationMethodConfig, Config, ControllerConfig, Interface, WifiController};
use log::{error, info, warn};
use static_cell::StaticCell;
use {esp_backtrace as _, esp_println as _};

esp_bootloader_esp_idf::esp_app_desc!();

/// One socket per lane (checks, refreshes): a lane drops its connection before opening the next.
const TCP_SOCKETS: usize = 2;
const TCP_TX: usize = 4096;
const TCP_RX: usize = 4096;
type Tcp = TcpClient<'static, TCP_SOCKETS, TCP_TX, TCP_RX>;
/// TCP sockets + the DNS socket + the DHCP socket.
const NET_SOCKETS: usize = TCP_SOCKETS + 2;

/// Tasks share the link from one executor; a `static` needs `Sync`.
type Mutex = CriticalSectionRawMutex;
type GateLink = Link<'static, Mutex>;
type GateDriver = Driver<'static, Mutex, Tcp, DnsSocket<'static>>;

static LINK: GateLink = Link::new();

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Interface>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn driver_task(driver: GateDriver) -> ! {
    driver.run().await
}

/// Keeps the station associated: joins, waits for a drop, joins again (every 5 s on failure).
#[embassy_executor::task]
async fn wifi_task(mut controller: WifiController<'static>) -> ! {
    loop {
        match controller.connect_async().await {
            Ok(_) => {
                info!("Wi-Fi: joined {}", config::WIFI_SSID);
                let reason = controller.wait_for_disconnect_async().await;
                warn!("Wi-Fi: dropped ({:?})", reason.map(|d| d.reason));
            }
            Err(e) => warn!("Wi-Fi: joining {} failed: {:?}", config::WIFI_SSID, e),
        }
        Timer::after(Duration::from_secs(5)).await;
    }
}

/// Forwards the gate's events to the log (the status is on the LED).
#[embassy_executor::task]
async fn event_task() -> ! {
    loop {
        let e = LINK.next_event().await;
        let mut line = heapless::String::<192>::new();
        // A cut line in the log is harmless.
        let _ = write_event_text(&mut line, &e, accessgate::Instant::ZERO);
        info!("gate event: {}", line);
    }
}

/// Restores the configured session once the network is up, then re-checks on the BOOT button
/// and every [`config::RECHECK_PERIOD`].
#[embassy_executor::task]
async fn app_task(stack: embassy_net::Stack<'static>, mut button: Input<'static>) -> ! {
    info!("waiting for the network configuration");
    stack.wait_config_up().await;
    if let Some(v4) = stack.config_v4() {
        info!("network up: {}", v4.address);
    }
    // `try_restore` copies the tokens straight into the command queue's slot: no 2 KiB
    // command is built in this task's memory, and no copy of a token is left there (see
    // "Token hygiene" in the adapter's docs). The queue is empty at boot.
    if let Err(e) = LINK.try_restore(
        config::ACCESS_TOKEN.as_bytes(),
        config::REFRESH_TOKEN.as_bytes(),
        config::ACCESS_TOKEN_EXPIRES_IN,
    ) {
        error!("session not restored: {}", e);
    }
    loop {
        let period = async {
            match config::RECHECK_PERIOD {
                Some(p) => Timer::after(p).await,
                None => core::future::pending().await,
            }
        };
        match select(button.wait_for_falling_edge(), period).await {
            Either::First(()) => {
                info!("BOOT button: re-check");
                // Debounce: ignore the bounces of this press.
                Timer::after_millis(50).await;
                button.wait_for_high().await;
            }
            Either::Second(()) => info!("periodic re-check"),
        }
        // Refused while signed out or rate-limited; the snapshot counts refusals.
        if LINK.try_send(Command::Recheck).is_err() {
            warn!("command queue full: re-check dropped");
        }
    }
}

/// The status LED, honouring [`config::LED_ACTIVE_LOW`].
struct Led(Output<'static>);

impl Led {
    fn set(&mut self, lit: bool) {
        self.0.set_level(Level::from(lit != config::LED_ACTIVE_LOW));
    }
}

/// A repeating LED pattern: milliseconds lit, dark, lit, dark, ... (an even count).
type Pattern = &'static [u16];

const BOOTING: Pattern = &[100, 900];
const CHECKING: Pattern = &[125, 125];
const GRANTED: Pattern = &[1000, 0];
const REVERIFYING: Pattern = &[900, 100];
const DENIED: Pattern = &[0, 1000];
const FAILED_CLOSED: Pattern = &[100, 200, 100, 1600];
const SIGNED_OUT: Pattern = &[100, 200, 100, 200, 100, 1300];
const CONFIG_ERROR: Pattern = &[50, 50];

/// The LED pattern for a status. See the table in the crate docs.
fn pattern(s: &Status) -> Pattern {
    match s.access {
        Access::Granted if s.reverifying_until.is_some() => REVERIFYING,
        Access::Granted => GRANTED,
        Access::Denied if s.probing => FAILED_CLOSED,
        Access::Denied => DENIED,
        Access::Unknown if s.signed_in => CHECKING,
        // Never signed in yet (boot) vs signed out after a session (a cause is set).
        Access::Unknown if s.cause.is_none() => BOOTING,
        Access::Unknown => SIGNED_OUT,
    }
}

/// Plays `pattern` once, step by step.
async fn play(led: &mut Led, pattern: Pattern) {
    for (i, &ms) in pattern.iter().enumerate() {
        if ms > 0 {
            led.set(i % 2 == 0);
            Timer::after_millis(u64::from(ms)).await;
        }
    }
}

/// Renders the gate's status on the LED; a new status restarts the pattern at once.
#[embassy_executor::task]
async fn led_task(mut led: Led) -> ! {
    let Some(mut status) = LINK.status_receiver() else {
        error!("no status receiver left for the LED");
        loop {
            play(&mut led, CONFIG_ERROR).await;
        }
    };
    let mut last: Option<Snapshot> = None;
    loop {
        let s = last.map(|s| s.status).unwrap_or_default();
        let current = pattern(&s);
        let shown = async {
            loop {
                play(&mut led, current).await;
            }
        };
        if let Either::First(snapshot) = select(status.changed(), shown).await {
            if last.is_none_or(|l| l.status != snapshot.status) {
                info!("gate status: {:?}", snapshot.status);
            }
            last = Some(snapshot);
        }
    }
}

fn net_config() -> embassy_net::Config {
    match &config::STATIC_IPV4 {
        None => embassy_net::Config::dhcpv4(Default::default()),
        Some(ip) => {
            let [a, b, c, d] = ip.address.0;
            let mut dns_servers = heapless::Vec::new();
            let [e, f, g, h] = ip.dns;
            let _ = dns_servers.push(Ipv4Address::new(e, f, g, h));
            let [i, j, k, l] = ip.gateway;
            embassy_net::Config::ipv4_static(StaticConfigV4 {
                address: Ipv4Cidr::new(Ipv4Address::new(a, b, c, d), ip.address.1),
                gateway: Some(Ipv4Address::new(i, j, k, l)),
                dns_servers,
            })
        }
    }
}

/// The Wi-Fi station configuration, or `None` (logged) if SSID or passphrase do not fit.
fn station_config() -> Option<Config> {
    let Ok(ssid) = config::WIFI_SSID.try_into() else {
        error!("WIFI_SSID is longer than 32 bytes");
        return None;
    };
    let authentication = if config::WIFI_PASSWORD.is_empty() {
        AuthenticationMethodConfig::Open
    } else {
        let Ok(password) = config::WIFI_PASSWORD.try_into() else {
            error!("WIFI_PASSWORD is longer than 64 bytes");
            return None;
        };
        AuthenticationMethodConfig::Wpa2Personal(password)
    };
    Some(Config::Station(
        StationConfig::default()
            .with_ssid(ssid)
            .with_authentication(authentication),
    ))
}

/// The transport the configuration asks for, or `None` (logged) if it asks for nothing safe.
///
/// **TLS configuration: the one place** (with `config::TLS_CA_DER`) that follows the adapter's
/// TLS API. The settings are read through `black_box` so the decision is made at boot: with
/// `None` the compiler would otherwise drop the whole gate from the image, and the image's
/// size would depend on whether a CA is set (FIGURES.md measures the image as built from this
/// repository, which has no CA and refuses to start).
fn transport() -> Option<Transport<'static>> {
    if core::hint::black_box(config::ALLOW_PLAIN_HTTP) {
        warn!("ALLOW_PLAIN_HTTP: checks go in clear text and answers can be forged");
        return Some(Transport::PlainHttp);
    }
    match core::hint::black_box(config::TLS_CA_DER) {
        Some(ca_der) => Some(Transport::tls(ca_der)),
        None => {
            error!(
                "TLS_CA_DER is not configured: refusing to start the gate over unverified TLS \
                 (set the CA in config.rs, or ALLOW_PLAIN_HTTP for a closed test network)"
            );
            None
        }
    }
}

/// Blinks the LED fast for ever: the gate did not start.
async fn configuration_error(mut led: Led) -> ! {
    loop {
        play(&mut led, CONFIG_ERROR).await;
    }
}

fn random_u64(rng: &Rng) -> u64 {
    (u64::from(rng.random()) << 32) | u64::from(rng.random())
}

#[esp_rtos::main]
async fn main(spawner: Spawner) -> ! {
    esp_println::logger::init_logger_from_env();
    let p = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    // Heap for esp-radio (Wi-Fi buffers, its driver tasks and their stacks); the gate itself
    // does not allocate. Sizes as esp-radio's docs give them: 64 KiB in the RAM the second-stage
    // bootloader used (free once the app runs, so it costs no static RAM), 36 KiB in DRAM.
    esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: 64 * 1024);
    esp_alloc::heap_allocator!(size: 36 * 1024);
    info!("accessgate esp32c3 firmware: checking {}", config::CHECK_URL);

    let timg0 = TimerGroup::new(p.TIMG0);
    esp_rtos::start(timg0.timer0, p.FROM_CPU_INTR0);

    let led = Led(Output::new(
        p.GPIO8,
        Level::from(config::LED_ACTIVE_LOW),
        OutputConfig::default(),
    ));
    // BOOT button: low while pressed (external pull-up on the boards, internal one as well).
    let button = Input::new(p.GPIO9, InputConfig::default().with_pull(Pull::Up));

    let Some(transport) = transport() else {
        configuration_error(led).await
    };
    let Some(station) = station_config() else {
        configuration_error(led).await
    };
    let controller =
        match WifiController::new(p.WIFI, ControllerConfig::default().with_initial_config(station)) {
            Ok(c) => c,
            Err(e) => {
                error!("Wi-Fi start failed: {:?}", e);
                configuration_error(led).await
            }
        };
    // The radio is on from here: the hardware RNG now mixes in RF noise (true random).
    let rng = Rng::new();
    let net_seed = random_u64(&rng);
    let jitter = random_u64(&rng);
    let mut tls_seed = [0; 32];
    rng.read(&mut tls_seed);
    let seeds = Seeds::new(jitter).with_tls(tls_seed);

    static RESOURCES: StaticCell<StackResources<NET_SOCKETS>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        Interface::station(),
        net_config(),
        RESOURCES.init(StackResources::new()),
        net_seed,
    );
    spawner.spawn(net_task(runner).expect("net task spawned once"));
    spawner.spawn(wifi_task(controller).expect("wifi task spawned once"));

    static TCP_STATE: StaticCell<TcpClientState<TCP_SOCKETS, TCP_TX, TCP_RX>> = StaticCell::new();
    static TCP: StaticCell<Tcp> = StaticCell::new();
    static DNS: StaticCell<DnsSocket<'static>> = StaticCell::new();
    static CHECK_BUFFERS: StaticCell<CheckStorage> = StaticCell::new();
    static REFRESH_BUFFERS: StaticCell<RefreshStorage> = StaticCell::new();
    let tcp = TCP.init(TcpClient::new(stack, TCP_STATE.init(TcpClientState::new())));
    let dns = DNS.init(DnsSocket::new(stack));

    let mut gate = DriverConfig::new(config::CHECK_URL, transport).with_session(config::SESSION);
    let mut buffers = DriverBuffers::new(CHECK_BUFFERS.init(CheckStorage::new()).buffers());
    if let Some(endpoint) = config::REFRESH {
        gate = gate.with_refresh(endpoint);
        buffers = buffers.with_refresh(REFRESH_BUFFERS.init(RefreshStorage::new()).buffers());
    }
    // No `.await` inside this `match`: its scrutinee (the ~5 KiB driver) would be kept in the
    // main task's static storage across it.
    let started = match GateDriver::new(&LINK, tcp, dns, gate, buffers, seeds) {
        Ok(driver) => {
            spawner.spawn(driver_task(driver).expect("driver task spawned once"));
            true
        }
        Err(e) => {
            error!("gate configuration refused: {}", e);
            false
        }
    };
    if !started {
        configuration_error(led).await
    }
    spawner.spawn(event_task().expect("event task spawned once"));
    spawner.spawn(led_task(led).expect("led task spawned once"));
    spawner.spawn(app_task(stack, button).expect("app task spawned once"));
    loop {
        Timer::after_secs(3600).await;
    }
}
