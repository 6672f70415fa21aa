//! The guest's clocks and random sources, recorded and replayed: WASI
//! reads them through these when a call is being recorded ([`Tape`]) or
//! replayed ([`Player`]), and through wasmtime-wasi's own otherwise.

use std::convert::Infallible;
use std::time::Duration;

use rand_core::TryRng;
use wasmtime_wasi::clocks::{MonotonicClock, WallClock};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, Rng};

use super::player::Player;
use super::tape::Tape;

/// A clock or random source, as the recording or its replay gives it.
pub enum Source {
    /// Live, each reading kept on the tape.
    Taped(Tape),
    /// Answered from a recording.
    Replayed(Player),
}

/// `wasi:clocks/wall-clock`.
pub struct Wall(pub Source);

impl HostWallClock for Wall {
    fn resolution(&self) -> Duration {
        WallClock.resolution()
    }

    fn now(&self) -> Duration {
        match &self.0 {
            Source::Taped(tape) => {
                let now = WallClock.now();
                tape.wall(now);
                now
            }
            Source::Replayed(player) => player.wall(),
        }
    }
}

/// `wasi:clocks/monotonic-clock`.
pub struct Monotonic {
    source: Source,
    clock: MonotonicClock,
}

impl Monotonic {
    /// The monotonic clock of `source`.
    pub fn new(source: Source) -> Self {
        Self {
            source,
            clock: MonotonicClock::new(),
        }
    }
}

impl HostMonotonicClock for Monotonic {
    fn resolution(&self) -> u64 {
        self.clock.resolution()
    }

    fn now(&self) -> u64 {
        match &self.source {
            Source::Taped(tape) => {
                let now = self.clock.now();
                tape.monotonic(now);
                now
            }
            Source::Replayed(player) => player.monotonic(),
        }
    }
}

/// `wasi:random/random` (`secure`) or `wasi:random/insecure`.
pub struct Random {
    source: Source,
    secure: bool,
    live: Option<Box<dyn Rng + Send>>,
}

impl Random {
    /// The random source of `source`; a taped one draws from the host's
    /// generator.
    pub fn new(source: Source, secure: bool) -> Self {
        let live = matches!(source, Source::Taped(_)).then(wasmtime_wasi::thread_rng);
        Self {
            source,
            secure,
            live,
        }
    }
}

impl TryRng for Random {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        match (&self.source, &mut self.live) {
            (Source::Taped(tape), Some(live)) => {
                live.fill_bytes(dst);
                tape.random(self.secure, dst);
            }
            (Source::Taped(tape), None) => tape.random(self.secure, dst),
            (Source::Replayed(player), _) => player.random(self.secure, dst),
        }
        Ok(())
    }
}

/// A WASI context builder's clocks and random sources set to `source`'s
/// (`make` gives a fresh handle for each of the four), and the insecure
/// seed recorded or replayed.
pub fn install(builder: &mut wasmtime_wasi::WasiCtxBuilder, make: impl Fn() -> Source) {
    let seed = match make() {
        Source::Taped(tape) => {
            let seed = u128::from_le_bytes(std::array::from_fn(|_| fastrand::u8(..)));
            tape.seed(seed);
            seed
        }
        Source::Replayed(player) => player.seed(),
    };
    builder
        .wall_clock(Wall(make()))
        .monotonic_clock(Monotonic::new(make()))
        .secure_random(Random::new(make(), true))
        .insecure_random(Random::new(make(), false))
        .insecure_random_seed(seed);
}
