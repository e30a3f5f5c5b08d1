//! NUCLEO-F767ZI firmware running the access gate: the embassy adapter's [`Driver`]
//! (accessgate core + reqwless + embedded-tls) over embassy-net on the on-board Ethernet
//! (LAN8742A PHY, RMII), with `TcpClient` + `DnsSocket` as its network. Everything a
//! deployment changes is in [`config`]. Logs go out over defmt (RTT).
//!
//! At boot the board restores the session of [`config::ACCESS_TOKEN`] once the network is
//! up; the gate checks at once (R3), then on token refreshes, every
//! [`config::RECHECK_PERIOD`] and when the USER button (B1) is pressed.
//!
//! Transport: HTTPS with the server certificate verified against [`config::TLS_CA_DER`].
//! Without a CA the gate is **not started** (error log + LED pattern below); plain HTTP only
//! when [`config::ALLOW_PLAIN_HTTP`] says so explicitly. Never unverified TLS.
//!
//! LEDs (LD1 green PB0, LD2 blue PB7, LD3 red PB14; "blink" = 2 Hz):
//!
//! | state | LD1 green | LD2 blue | LD3 red |
//! |---|---|---|---|
//! | booting, network not up, not signed in yet | off | blink | off |
//! | `Unknown`, signed in: first check pending ("checking") | off | on | off |
//! | `Granted` | on | off | off |
//! | `Granted`, re-verifying (transient failures, before the fail-closed deadline) | blink | off | off |
//! | `Denied` by the server | off | off | on |
//! | `Denied`, failed closed, probing for recovery | off | off | blink |
//! | signed out (401, rejected refresh): sign-in needed | off | blink | on |
//! | configuration error: gate not started | blink | blink | blink |

#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod config;

use accessgate::{Access, Status};
use accessgate_embassy::{
    CheckStorage, Command, Driver, DriverBuffers, DriverConfig, Link, RefreshStorage, Seeds, Snapshot,
    Transport,
};
use defmt::{error, info, unwrap, warn};
use embassy_executor::Spawner;
use embassy_futures::select::{select, Either};
use embassy_net::dns::DnsSocket;
use embassy_net::tcp::client::{TcpClient, TcpClientState};
use embassy_net::{Ipv4Address, Ipv4Cidr, StackResources, StaticConfigV4};
use embassy_stm32::eth::{Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::exti::{self, ExtiInput};
use embassy_stm32::gpio::{Level, Output, Pull, Speed};
use embassy_stm32::mode::Async;
use embassy_stm32::peripherals::{ETH, ETH_SMA};
use embassy_stm32::rng::Rng;
use embassy_stm32::time::Hertz;
use embassy_stm32::{bind_interrupts, eth, interrupt, peripherals, rng};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::{Duration, Timer};
use static_cell::StaticCell;
use {defmt_rtt as _, panic_probe as _};

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    RNG => rng::InterruptHandler<peripherals::RNG>;
    EXTI15_10 => exti::InterruptHandler<interrupt::typelevel::EXTI15_10>;
});

type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

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

/// LED blink half-period.
const BLINK: Duration = Duration::from_millis(250);

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Device>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn driver_task(driver: GateDriver) -> ! {
    driver.run().await
}

/// Forwards the gate's events to the log (the status is on the LEDs).
#[embassy_executor::task]
async fn event_task() -> ! {
    loop {
        let e = LINK.next_event().await;
        info!("gate event: {}", e);
    }
}

/// Restores the configured session once the network is up, then re-checks on the USER button
/// and every [`config::RECHECK_PERIOD`].
#[embassy_executor::task]
async fn app_task(stack: embassy_net::Stack<'static>, mut button: ExtiInput<'static, Async>) -> ! {
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
        match select(button.wait_for_rising_edge(), period).await {
            Either::First(()) => {
                info!("USER button: re-check");
                // Debounce: ignore the bounces of this press.
                Timer::after_millis(50).await;
                button.wait_for_low().await;
            }
            Either::Second(()) => info!("periodic re-check"),
        }
        // Refused while signed out or rate-limited; the snapshot counts refusals.
        if LINK.try_send(Command::Recheck).is_err() {
            warn!("command queue full: re-check dropped");
        }
    }
}

struct Leds {
    green: Output<'static>,
    blue: Output<'static>,
    red: Output<'static>,
}

impl Leds {
    fn show(&mut self, (g, b, r): (bool, bool, bool)) {
        self.green.set_level(Level::from(g));
        self.blue.set_level(Level::from(b));
        self.red.set_level(Level::from(r));
    }
}

/// (green, blue, red) for a status; `on` is the blink phase. See the table in the crate docs.
fn pattern(s: &Status, on: bool) -> (bool, bool, bool) {
    match s.access {
        Access::Granted => (s.reverifying_until.is_none() || on, false, false),
        Access::Denied => (false, false, !s.probing || on),
        Access::Unknown if s.signed_in => (false, true, false),
        // Never signed in yet (boot) vs signed out after a session (a cause is set).
        Access::Unknown if s.cause.is_none() => (false, on, false),
        Access::Unknown => (false, on, true),
    }
}

/// Renders the gate's status on the LEDs.
#[embassy_executor::task]
async fn led_task(mut leds: Leds) -> ! {
    let Some(mut status) = LINK.status_receiver() else {
        error!("no status receiver left for the LEDs");
        loop {
            leds.show((false, false, true));
            Timer::after_secs(3600).await;
        }
    };
    let mut last: Option<Snapshot> = None;
    let mut on = true;
    loop {
        let s = last.map(|s| s.status).unwrap_or_default();
        leds.show(pattern(&s, on));
        match select(status.changed(), Timer::after(BLINK)).await {
            Either::First(snapshot) => {
                if last.is_none_or(|l| l.status != snapshot.status) {
                    info!("gate status: {}", snapshot.status);
                }
                last = Some(snapshot);
            }
            Either::Second(()) => on = !on,
        }
    }
}

fn clocks() -> embassy_stm32::Config {
    use embassy_stm32::rcc::*;
    let mut config = embassy_stm32::Config::default();
    // 8 MHz HSE from the ST-LINK's MCO (bypass) -> 216 MHz SYSCLK, 48 MHz for the RNG.
    config.rcc.hse = Some(Hse {
        freq: Hertz(8_000_000),
        mode: HseMode::Bypass,
    });
    config.rcc.pll_src = PllSource::HSE;
    config.rcc.pll = Some(Pll {
        prediv: PllPreDiv::DIV4,
        mul: PllMul::MUL216,
        divp: Some(PllPDiv::DIV2), // 8 / 4 * 216 / 2 = 216 MHz
        divq: Some(PllQDiv::DIV9), // 8 / 4 * 216 / 9 = 48 MHz
        divr: None,
    });
    config.rcc.ahb_pre = AHBPrescaler::DIV1;
    config.rcc.apb1_pre = APBPrescaler::DIV4;
    config.rcc.apb2_pre = APBPrescaler::DIV2;
    config.rcc.sys = Sysclk::PLL1_P;
    config.rcc.mux.clk48sel = mux::Clk48sel::PLL1_Q;
    config
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

/// The transport the configuration asks for, or `None` (logged) if it asks for nothing safe.
///
/// The settings are read through `black_box` so the decision is made at boot: with `None` the
/// compiler would otherwise drop the whole gate from the image, and an image's size and code
/// would depend on whether a CA is set (FIGURES.md measures the image as built from this
/// repository, which has no CA and refuses to start).
fn transport() -> Option<Transport<'static>> {
    if core::hint::black_box(config::ALLOW_PLAIN_HTTP) {
        warn!("ALLOW_PLAIN_HTTP: checks go in clear text and answers can be forged");
        return Some(Transport::PlainHttp);
    }
    match core::hint::black_box(config::TLS_CA_DER) {
        // No wall clock on this board yet (no RTC setting, no SNTP): certificate dates are
        // checked only as far as the adapter can without one (see `Transport::Tls`).
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

/// Blinks all LEDs for ever: the gate did not start.
async fn configuration_error(mut leds: Leds) -> ! {
    let mut on = true;
    loop {
        leds.show((on, on, on));
        on = !on;
        Timer::after(BLINK).await;
    }
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_stm32::init(clocks());
    info!("accessgate nucleo firmware: checking {}", config::CHECK_URL);

    let leds = Leds {
        green: Output::new(p.PB0, Level::Low, Speed::Low),
        blue: Output::new(p.PB7, Level::Low, Speed::Low),
        red: Output::new(p.PB14, Level::Low, Speed::Low),
    };
    // B1 USER: high while pressed (external pull-down on the board).
    let button = ExtiInput::new(p.PC13, p.EXTI13, Pull::Down, Irqs);

    let mut rng = Rng::new(p.RNG, Irqs);
    let net_seed = rng.next_u64();
    let jitter = rng.next_u64();
    let mut tls_seed = [0; 32];
    rng.fill_bytes(&mut tls_seed);
    let seeds = Seeds::new(jitter).with_tls(tls_seed);

    let Some(transport) = transport() else {
        configuration_error(leds).await
    };

    static PACKETS: StaticCell<PacketQueue<4, 4>> = StaticCell::new();
    // NUCLEO-F767ZI RMII pins (UM1974): REF_CLK PA1, CRS_DV PA7, RXD0 PC4, RXD1 PC5,
    // TXD0 PG13, TXD1 PB13, TX_EN PG11; MDIO PA2, MDC PC1.
    let device = Ethernet::new(
        PACKETS.init(PacketQueue::<4, 4>::new()),
        p.ETH,
        Irqs,
        p.PA1,
        p.PA7,
        p.PC4,
        p.PC5,
        p.PG13,
        p.PB13,
        p.PG11,
        config::MAC_ADDR,
        p.ETH_SMA,
        p.PA2,
        p.PC1,
    );

    static RESOURCES: StaticCell<StackResources<NET_SOCKETS>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        device,
        net_config(),
        RESOURCES.init(StackResources::new()),
        net_seed,
    );
    spawner.spawn(unwrap!(net_task(runner)));

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
            spawner.spawn(unwrap!(driver_task(driver)));
            true
        }
        Err(e) => {
            error!("gate configuration refused: {}", e);
            false
        }
    };
    if !started {
        configuration_error(leds).await
    }
    spawner.spawn(unwrap!(event_task()));
    spawner.spawn(unwrap!(led_task(leds)));
    spawner.spawn(unwrap!(app_task(stack, button)));
}
