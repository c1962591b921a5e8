//! The process metrics under their standard names, read from `/proc/self` at each scrape:
//! open file descriptors, resident memory and CPU seconds, which make a leak visible.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads the process's own figures when scraped; a figure that cannot be read is left out.
#[derive(Debug)]
pub struct Process;

/// The figures of `/proc/self`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Figures {
    open_fds: Option<i64>,
    resident_bytes: Option<i64>,
    cpu_seconds: Option<f64>,
}

impl Figures {
    #[cfg(target_os = "linux")]
    fn read() -> Figures {
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as i64);
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let page = rustix::param::page_size() as i64;
        let (cpu, rss) = parse_stat(&stat);
        Figures {
            open_fds,
            resident_bytes: rss.map(|pages| pages * page),
            cpu_seconds: cpu.map(|t| t as f64 / ticks),
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn read() -> Figures {
        Figures::default()
    }
}

/// From a `/proc/<pid>/stat` line: user plus system CPU time, in clock ticks (fields 14 and
/// 15), and the resident set, in pages (field 24). Fields are counted after the command name,
/// which is in parentheses and may hold spaces (proc(5)).
fn parse_stat(stat: &str) -> (Option<u64>, Option<i64>) {
    let Some((_, after)) = stat.rsplit_once(')') else {
        return (None, None);
    };
    // `after` starts at field 3 (the state).
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).copied();
    let cpu = match (
        field(14).map(str::parse::<u64>),
        field(15).map(str::parse::<u64>),
    ) {
        (Some(Ok(u)), Some(Ok(s))) => Some(u + s),
        _ => None,
    };
    let rss = field(24).and_then(|v| v.parse().ok());
    (cpu, rss)
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let f = Figures::read();
        if let Some(n) = f.open_fds {
            let gauge = ConstGauge::new(n);
            gauge.encode(encoder.encode_descriptor(
                "process_open_fds",
                "Open file descriptors",
                None,
                gauge.metric_type(),
            )?)?;
        }
        if let Some(n) = f.resident_bytes {
            let gauge = ConstGauge::new(n);
            gauge.encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                None,
                gauge.metric_type(),
            )?)?;
        }
        if let Some(s) = f.cpu_seconds {
            let counter = ConstCounter::new(s);
            counter.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_and_rss_from_a_stat_line_whose_name_holds_spaces_and_parens() {
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 3 0 1000 123456789 2048 18446744073709551615";
        assert_eq!(parse_stat(stat), (Some(300), Some(2048)));
        assert_eq!(parse_stat("garbage"), (None, None));
        assert_eq!(parse_stat("1 (x) S 1"), (None, None));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let f = Figures::read();
        assert!(f.open_fds.is_some_and(|n| n >= 3), "{f:?}");
        assert!(f.resident_bytes.is_some_and(|n| n > 1 << 20), "{f:?}");
        assert!(f.cpu_seconds.is_some_and(|s| s >= 0.0), "{f:?}");
    }
}
