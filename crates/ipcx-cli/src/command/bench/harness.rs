//! Measuring one floor at one size: start the peer, warm up, time round trips, then time
//! one-direction throughput at the receiver.
//!
//! Sequence per entry: a probe of [`PROBE_ROUNDS`] round trips estimates the round-trip
//! time; warm-up round trips (discarded) fill caches and wake CPUs for [`Plan`]'s warm-up
//! time; the measured round trips fill its ping-pong budget, each timed with `Instant`
//! (one clock read per round trip: consecutive reads delimit the samples). Throughput: the
//! peer sends a burst, the bench receives and starts its clock after the first tenth; a
//! short burst first estimates the rate, the measured burst fills the throughput budget.
//! Entries measured for latency only ([`Floor::throughput_at`]) skip the throughput.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::control::Command;
use super::floors::{Channel, Endpoint, Floor};
use super::peer::{PeerProcess, Spawn};
use super::stats::{self, nanos, OneWay};

/// Round trips of the probe that estimates the round-trip time.
const PROBE_ROUNDS: u64 = 10;
/// Slack added to every phase's expected time before the watchdog kills the peer.
const PHASE_SLACK: Duration = Duration::from_secs(5);
/// How long the probe may take (ten round trips: even of 1 MiB on a loaded machine, far less).
const PROBE_LIMIT: Duration = PHASE_SLACK;
/// A phase may run this many times longer than expected before it is killed.
const PHASE_FACTOR: u32 = 20;
/// Bounds on measured round trips and throughput messages, whatever the budget says.
const MIN_SAMPLES: u64 = 100;
const MAX_SAMPLES: u64 = 2_000_000;
const MIN_MESSAGES: u64 = 100;
const MAX_MESSAGES: u64 = 10_000_000;
/// How much a too short throughput probe grows at each step, and how many steps at most.
const PROBE_GROWTH: u64 = 8;
const PROBE_STEPS: u32 = 3;

/// How long to measure each entry.
#[derive(Debug, Clone)]
pub struct Plan {
    warmup: Duration,
    pingpong: Duration,
    throughput: Duration,
    fixed: Option<u64>,
}

impl Plan {
    /// `--quick`: about 0.75 s per entry; otherwise about 4 s. `fixed` replaces the
    /// time budgets by a number of round trips and of throughput messages.
    pub fn new(quick: bool, fixed: Option<u64>) -> Plan {
        let ms = Duration::from_millis;
        let (warmup, pingpong, throughput) =
            if quick { (ms(25), ms(500), ms(200)) } else { (ms(100), ms(3000), ms(1000)) };
        Plan { warmup, pingpong, throughput, fixed }
    }

    fn warmup_rounds(&self, rtt_ns: u64) -> u64 {
        fit(self.warmup, rtt_ns, 10, MAX_SAMPLES)
    }

    fn samples(&self, rtt_ns: u64) -> u64 {
        self.fixed.unwrap_or_else(|| fit(self.pingpong, rtt_ns, MIN_SAMPLES, MAX_SAMPLES))
    }

    /// Messages of the throughput probe: a tenth of the budget if a message costs a
    /// one-way trip (pipelining makes it cost less, so the probe is shorter).
    fn messages_probe(&self, rtt_ns: u64) -> u64 {
        self.fixed
            .unwrap_or_else(|| fit(self.throughput / 10, rtt_ns / 2, MIN_MESSAGES, MAX_MESSAGES))
    }

    /// Whether a probe of `messages` at `rate` lasted too little to be trusted: under a
    /// quarter of the probe's budget (a tenth of the throughput budget). Never with `fixed`.
    fn probe_is_short(&self, messages: u64, rate: f64) -> bool {
        self.fixed.is_none() && (messages as f64 / rate) < (self.throughput / 40).as_secs_f64()
    }

    /// Messages of the measured burst: the budget at the probe's rate (or at one message
    /// per one-way trip if the probe gave no rate).
    fn messages(&self, rtt_ns: u64, probe_rate: Option<f64>) -> u64 {
        let per_message_ns = match probe_rate {
            Some(rate) if rate > 0.0 => (1e9 / rate) as u64,
            _ => rtt_ns / 2,
        };
        self.fixed
            .unwrap_or_else(|| fit(self.throughput, per_message_ns, MIN_MESSAGES, MAX_MESSAGES))
    }
}

/// How many operations of `each_ns` fit in `budget`, within `min..=max`.
fn fit(budget: Duration, each_ns: u64, min: u64, max: u64) -> u64 {
    (nanos(budget) / each_ns.max(1)).clamp(min, max)
}

/// The watchdog limit of a phase expected to take `count` operations of `each_ns`.
fn limit(count: u64, each_ns: u64) -> Duration {
    let expected = Duration::from_nanos(count.saturating_mul(each_ns.max(1)));
    PHASE_SLACK.saturating_add(expected.saturating_mul(PHASE_FACTOR))
}

/// What one entry measured.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// One-way latency percentiles.
    pub latency: OneWay,
    /// One-direction messages per second at the receiver.
    pub msgs_per_s: Option<f64>,
}

/// Measures `floor` with `size`-byte messages against a peer pinned to `peer_cpu`.
/// The calling thread should already be pinned to its own CPU.
pub fn measure(
    floor: &dyn Floor,
    size: usize,
    plan: &Plan,
    peer_cpu: Option<usize>,
) -> Result<Measured> {
    let Channel { stdin, stdout, rendezvous, connect } =
        floor.create(size).context("cannot create the channel")?;
    let spawn = Spawn { name: floor.name(), size, stdin, stdout, rendezvous, cpu: peer_cpu };
    let mut peer = PeerProcess::start(spawn)?;
    let end = connect(peer.child()).context("cannot connect to the peer")?;
    let mut run = Run { peer, end, msg: vec![0xA5; size], buf: vec![0; size], rtts: Vec::new() };

    run.pingpong(PROBE_ROUNDS, PROBE_LIMIT).context("probe")?;
    // The probe's median ignores its cold first trips; later budgets use means, which is
    // what wall time follows when the tail is heavy.
    let rtt = stats::median(&run.rtts).unwrap_or(1);
    let warmup = plan.warmup_rounds(rtt);
    run.pingpong(warmup, limit(warmup, rtt)).context("warm-up")?;
    let rtt = stats::mean(&run.rtts).unwrap_or(rtt);
    let samples = plan.samples(rtt);
    run.pingpong(samples, limit(samples, rtt)).context("ping-pong")?;
    let latency = stats::one_way(&mut run.rtts).context("no round trip measured")?;

    let msgs_per_s =
        if floor.throughput_at(size) { throughput(&mut run, plan, rtt)? } else { None };
    run.peer.finish()?;
    Ok(Measured { latency, msgs_per_s })
}

/// One-direction messages per second: a short burst sized from the round trip warms the
/// path up and estimates the rate; the measured burst is sized from that rate.
///
/// A burst that fits whole in the channel's buffers is sent before the receiver starts its
/// clock and then drained at memory speed (a framed stream reads many messages per system
/// call), so its rate can be far above the sender's: a probe that took less than
/// [`Plan::probe_is_short`] grows ([`PROBE_GROWTH`]-fold, [`PROBE_STEPS`] times at most)
/// until it lasts long enough to be paced by the sender.
fn throughput(run: &mut Run, plan: &Plan, rtt: u64) -> Result<Option<f64>> {
    let mut probe = plan.messages_probe(rtt);
    let mut probe_rate = run.throughput(probe, limit(probe, rtt)).context("throughput probe")?;
    for _ in 0..PROBE_STEPS {
        match probe_rate {
            Some(rate) if plan.probe_is_short(probe, rate) && probe < MAX_MESSAGES => {
                probe = probe.saturating_mul(PROBE_GROWTH).min(MAX_MESSAGES);
                probe_rate =
                    run.throughput(probe, limit(probe, rtt)).context("throughput probe")?;
            }
            _ => break,
        }
    }
    let messages = plan.messages(rtt, probe_rate);
    run.throughput(messages, limit(messages, rtt)).context("throughput")
}

/// A started peer, the bench's end of the channel and the buffers of a measurement.
struct Run {
    peer: PeerProcess,
    end: Box<dyn Endpoint>,
    msg: Vec<u8>,
    buf: Vec<u8>,
    rtts: Vec<u64>,
}

impl Run {
    /// `rounds` round trips, their times in `self.rtts` (ns).
    fn pingpong(&mut self, rounds: u64, limit: Duration) -> Result<()> {
        let Run { peer, end, msg, buf, rtts } = self;
        rtts.clear();
        rtts.reserve(usize::try_from(rounds).unwrap_or(usize::MAX));
        peer.phase(Command::PingPong(rounds), limit, || {
            let mut last = Instant::now();
            for i in 0..rounds {
                end.send(msg)
                    .and_then(|()| end.recv(buf))
                    .with_context(|| format!("round trip {i} of {rounds}"))?;
                let now = Instant::now();
                rtts.push(nanos(now - last));
                last = now;
            }
            Ok(())
        })
    }

    /// The peer sends `count` messages plus a tenth more to warm up; the rate is timed here,
    /// at the receiver, from the end of the warm-up to the last message.
    fn throughput(&mut self, count: u64, limit: Duration) -> Result<Option<f64>> {
        let Run { peer, end, buf, .. } = self;
        let warm = (count / 10).max(1);
        let total = warm + count;
        peer.phase(Command::Send(total), limit, || {
            let mut got = 0;
            while got < warm {
                got += end.recv(buf).with_context(|| format!("message {got} of {total}"))?;
            }
            let (start, base) = (Instant::now(), got);
            while got < total {
                got += end.recv(buf).with_context(|| format!("message {got} of {total}"))?;
            }
            Ok(stats::rate(got - base, start.elapsed()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_scale_with_round_trip_time_within_bounds() {
        let quick = Plan::new(true, None);
        assert_eq!(quick.samples(10_000), 50_000);
        assert_eq!(quick.samples(100_000_000), MIN_SAMPLES);
        assert_eq!(quick.samples(1), MAX_SAMPLES);
        assert_eq!(quick.warmup_rounds(10_000), 2_500);
        assert_eq!(quick.messages_probe(10_000), 4_000);
        assert_eq!(quick.messages(10_000, None), 40_000);
        assert_eq!(quick.messages(10_000, Some(1e6)), 200_000);
        let fixed = Plan::new(true, Some(300));
        assert_eq!((fixed.samples(10_000), fixed.messages(10_000, Some(1e6))), (300, 300));
        // 4000 messages at 1 M/s last 4 ms, under a quarter of the 20 ms probe budget.
        assert!(quick.probe_is_short(4_000, 1e6) && !quick.probe_is_short(6_000, 1e6));
        assert!(!fixed.probe_is_short(1, 1e9));
    }

    #[test]
    fn phase_limits_leave_room() {
        assert_eq!(limit(0, 0), PHASE_SLACK);
        assert_eq!(limit(1000, 1_000_000), PHASE_SLACK + Duration::from_secs(20));
        assert!(limit(u64::MAX, u64::MAX) > Duration::from_secs(1 << 34)); // no overflow
    }
}
