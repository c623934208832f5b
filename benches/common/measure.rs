//! What the load drivers (benches/hop_load.rs, benches/scim_load.rs) measure alike: CPU ticks
//! of the server's process tree, of the driver and of the whole machine from /proc, and latency
//! percentiles of µs samples, reported in ms.

use serde_json::{Value, json};

/// CPU ticks (utime + stime) of `pid` and every descendant.
pub fn tree_ticks(pid: u32) -> u64 {
    let mut total = 0;
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            // Fields after the command name (in parentheses, which may hold spaces).
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let field = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            // utime is field 14 of the line, index 11 after the state (field 3).
            total += field(11) + field(12);
        }
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for task in tasks.filter_map(Result::ok) {
                let children = task.path().join("children");
                if let Ok(text) = std::fs::read_to_string(children) {
                    todo.extend(
                        text.split_whitespace()
                            .filter_map(|c| c.parse::<u32>().ok()),
                    );
                }
            }
        }
    }
    total
}

/// Busy ticks of the whole machine (every CPU), from /proc/stat.
pub fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or_default();
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum()
}

pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

pub struct Cpu {
    pub server: u64,
    pub driver: u64,
    pub machine: u64,
}

pub fn cpu(server: Option<u32>) -> Cpu {
    Cpu {
        server: server.map_or(0, tree_ticks),
        driver: tree_ticks(std::process::id()),
        machine: machine_busy_ticks(),
    }
}

pub fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn stats(mut values: Vec<u32>) -> Value {
    values.sort_unstable();
    let ms = |v: u32| (v as f64 / 10.0).round() / 100.0;
    json!({
        "n": values.len(),
        "p50_ms": ms(percentile(&values, 0.50)),
        "p90_ms": ms(percentile(&values, 0.90)),
        "p99_ms": ms(percentile(&values, 0.99)),
        "p999_ms": ms(percentile(&values, 0.999)),
        "max_ms": ms(values.last().copied().unwrap_or(0)),
    })
}
