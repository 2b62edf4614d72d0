//! Summary statistics of repeated measurements, and the A/B loop that takes them.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Median, spread and percentiles of one series, in the unit of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Stats {
    /// Number of measurements.
    pub(crate) n: usize,
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) p10: f64,
    pub(crate) p90: f64,
    pub(crate) mean: f64,
}

impl Stats {
    /// Statistics of `values` (any order). `None` when there are none or one is not finite.
    pub(crate) fn of(values: &[f64]) -> Option<Stats> {
        if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Stats {
            n: sorted.len(),
            median: percentile(&sorted, 0.5),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            p10: percentile(&sorted, 0.1),
            p90: percentile(&sorted, 0.9),
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        })
    }

    /// Statistics of durations, in milliseconds.
    pub(crate) fn of_millis(values: &[Duration]) -> Option<Stats> {
        let ms: Vec<f64> = values.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        Stats::of(&ms)
    }
}

/// The `q` quantile (0..=1) of sorted values, interpolating linearly between neighbours.
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of nothing");
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// One side of an A/B comparison: something that can be run repeatedly.
pub(crate) trait Case {
    /// Run it once.
    async fn run(&mut self) -> anyhow::Result<()>;
}

/// Wall times of the baseline and the subject, taken in the same process, and what each side
/// cost this process in total (CPU time of all its threads, context switches).
#[derive(Debug, Clone, Default)]
pub(crate) struct Paired {
    pub(crate) baseline: Vec<Duration>,
    pub(crate) subject: Vec<Duration>,
    pub(crate) baseline_usage: Usage,
    pub(crate) subject_usage: Usage,
}

/// Resources this process used (all threads, children not included).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Usage {
    /// User + system CPU time.
    pub(crate) cpu: Duration,
    /// Voluntary + involuntary context switches.
    pub(crate) context_switches: u64,
}

impl Usage {
    fn now() -> Usage {
        use nix::sys::resource::{UsageWho, getrusage};
        match getrusage(UsageWho::RUSAGE_SELF) {
            Ok(u) => {
                let tv = |t: nix::sys::time::TimeVal| {
                    Duration::from_secs(t.tv_sec().max(0) as u64)
                        + Duration::from_micros(t.tv_usec().max(0) as u64)
                };
                Usage {
                    cpu: tv(u.user_time()) + tv(u.system_time()),
                    context_switches: (u.voluntary_context_switches()
                        + u.involuntary_context_switches())
                    .max(0) as u64,
                }
            }
            Err(_) => Usage::default(),
        }
    }

    fn add_since(&mut self, start: Usage) {
        let now = Usage::now();
        self.cpu += now.cpu.saturating_sub(start.cpu);
        self.context_switches += now.context_switches.saturating_sub(start.context_switches);
    }
}

impl Paired {
    /// `CPU per iteration: … ms vs … ms; context switches: … vs …` (suite vs baseline).
    pub(crate) fn usage_note(&self) -> String {
        let per = |u: &Usage, n: usize| {
            let n = n.max(1) as f64;
            (u.cpu.as_secs_f64() * 1e3 / n, u.context_switches as f64 / n)
        };
        let (s_cpu, s_cs) = per(&self.subject_usage, self.subject.len());
        let (b_cpu, b_cs) = per(&self.baseline_usage, self.baseline.len());
        format!(
            "Per iteration this process (all its threads, fakes included) used {s_cpu:.3} ms CPU \
             and {s_cs:.1} context switches for the suite, {b_cpu:.3} ms and {b_cs:.1} for the \
             baseline."
        )
    }
}

/// Run both cases `warmup` times unmeasured, then `iterations` times each, alternating which one
/// goes first so that drift (caches, frequency, the other core's load) hits both alike.
pub(crate) async fn compare(
    warmup: usize,
    iterations: usize,
    baseline: &mut impl Case,
    subject: &mut impl Case,
) -> anyhow::Result<Paired> {
    for _ in 0..warmup {
        baseline.run().await?;
        subject.run().await?;
    }
    let mut out = Paired::default();
    for i in 0..iterations {
        if i % 2 == 0 {
            out.baseline
                .push(time(baseline, &mut out.baseline_usage).await?);
            out.subject
                .push(time(subject, &mut out.subject_usage).await?);
        } else {
            out.subject
                .push(time(subject, &mut out.subject_usage).await?);
            out.baseline
                .push(time(baseline, &mut out.baseline_usage).await?);
        }
    }
    Ok(out)
}

async fn time(case: &mut impl Case, usage: &mut Usage) -> anyhow::Result<Duration> {
    let before = Usage::now();
    let start = Instant::now();
    case.run().await?;
    let wall = start.elapsed();
    usage.add_since(before);
    Ok(wall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        let sorted = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&sorted, 0.0), 1.0);
        assert_eq!(percentile(&sorted, 1.0), 4.0);
        assert_eq!(percentile(&sorted, 0.5), 2.5);
        let s = Stats::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!(
            (s.n, s.min, s.median, s.max, s.mean),
            (3, 1.0, 3.0, 5.0, 3.0)
        );
        assert!(Stats::of(&[]).is_none());
        assert!(Stats::of(&[1.0, f64::NAN]).is_none());
    }

    struct Sleep(Duration, usize);
    impl Case for Sleep {
        async fn run(&mut self) -> anyhow::Result<()> {
            self.1 += 1;
            tokio::time::sleep(self.0).await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn compare_runs_both_sides_alike() {
        let mut fast = Sleep(Duration::from_millis(1), 0);
        let mut slow = Sleep(Duration::from_millis(20), 0);
        let paired = compare(1, 4, &mut fast, &mut slow).await.unwrap();
        assert_eq!((fast.1, slow.1), (5, 5));
        assert_eq!((paired.baseline.len(), paired.subject.len()), (4, 4));
        let (b, s) = (
            Stats::of_millis(&paired.baseline).unwrap(),
            Stats::of_millis(&paired.subject).unwrap(),
        );
        assert!(s.median > b.median, "{s:?} vs {b:?}");
        assert!(s.min >= 20.0, "{s:?}");
        assert!(paired.usage_note().contains("context switches"));
    }
}
