//! stlalloc-bench: the SPEC §7 workloads over system malloc, the core pool, the shared
//! pool and mimalloc; output as `bench/cpp/build/stlbench` prints it.
//!   stlalloc-bench [--workloads a,b] [--allocators x,y] [--runs N] [--scale F] [--json]

use std::process::{Command, ExitCode};
use stlalloc_workloads::{run, Allocator, Workload};

const USAGE: &str = "usage: stlalloc-bench [--workloads a,b,...] [--allocators x,y,...] [--runs N]
                      [--scale F] [--json]";

struct Options {
    workloads: Vec<Workload>,
    allocators: Vec<Allocator>,
    runs: usize,
    scale: f64,
    json: bool,
}

fn names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> String {
    all.iter().map(|&x| name(x)).collect::<Vec<_>>().join(" ")
}

fn usage_text() -> String {
    format!(
        "{USAGE}\nworkloads: {}\nallocators: {}",
        names(&Workload::ALL, Workload::name),
        names(Allocator::ALL, Allocator::name)
    )
}

fn parse_list<T>(v: &str, what: &str, find: fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| find(s).ok_or_else(|| format!("unknown {what}: {s}")))
        .collect()
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        workloads: Workload::ALL.to_vec(),
        allocators: Allocator::ALL.to_vec(),
        runs: 5,
        scale: 1.0,
        json: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--workloads" => o.workloads = parse_list(value()?, "workload", Workload::from_name)?,
            "--allocators" => {
                o.allocators = parse_list(value()?, "allocator", Allocator::from_name)?
            }
            "--runs" => o.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--scale" => o.scale = value()?.parse().map_err(|e| format!("--scale: {e}"))?,
            "--json" => o.json = true,
            _ => return Err(format!("unknown argument: {arg}")),
        }
    }
    if o.runs < 1 || !(o.scale > 0.0 && o.scale.is_finite()) {
        return Err("--runs must be at least 1 and --scale positive".into());
    }
    Ok(o)
}

/// Runs listmem for one allocator in a fresh copy of this program, so that no earlier
/// workload's freed memory (or another allocator's heap) is there to be reused.
fn listmem_in_child(a: Allocator, nodes: u64) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out = Command::new(exe)
        .args(["--listmem-child", a.name(), &nodes.to_string()])
        .output()
        .map_err(|e| format!("listmem child: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.trim().parse() {
        Ok(v) if out.status.success() => Ok(v),
        _ => Err(format!(
            "listmem child for {} failed ({}): {}",
            a.name(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Row {
    workload: Workload,
    allocator: Allocator,
    iterations: u64,
    runs: Vec<f64>,
}

fn print_json(r: &Row) {
    let runs: Vec<String> = r.runs.iter().map(|v| format!("{v:.3}")).collect();
    println!(
        "{{\"lang\":\"rust\",\"allocator\":\"{}\",\"workload\":\"{}\",\"unit\":\"{}\",\
         \"median\":{:.3},\"runs\":[{}],\"iterations\":{},\"threads\":{}}}",
        r.allocator.name(),
        r.workload.name(),
        r.workload.unit().as_str(),
        median(&r.runs),
        runs.join(","),
        r.iterations,
        r.workload.threads()
    );
}

fn print_row(r: &Row) {
    let runs: Vec<String> = r.runs.iter().map(|v| format!("{v:.2}")).collect();
    println!(
        "{:<10} {:<12} {:>10.2} {:<10} {:>11}  [{}]",
        r.workload.name(),
        r.allocator.name(),
        median(&r.runs),
        r.workload.unit().as_str(),
        r.iterations,
        runs.join(" ")
    );
}

fn libc_version() -> String {
    // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
    let v = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    v.to_string_lossy().into_owned()
}

fn bench(o: &Options) -> Result<(), String> {
    let context = format!(
        "# stlalloc-bench: glibc {}, runs={}, scale={}, mimalloc={}",
        libc_version(),
        o.runs,
        o.scale,
        cfg!(feature = "mimalloc")
    );
    if o.json {
        eprintln!("{context}");
    } else {
        println!("{context}");
        println!(
            "{:<10} {:<12} {:>10} {:<10} {:>11}  runs",
            "workload", "allocator", "median", "unit", "iterations"
        );
    }
    let mut results = Vec::new();
    for &w in &o.workloads {
        let iterations = w.iterations(o.scale);
        let mut rs: Vec<Row> = o
            .allocators
            .iter()
            .filter(|a| a.supports(w))
            .map(|&allocator| Row {
                workload: w,
                allocator,
                iterations,
                runs: Vec::with_capacity(o.runs),
            })
            .collect();
        // Interleave allocators run by run, so drift on a shared machine spreads over all.
        for _ in 0..o.runs {
            for r in &mut rs {
                let v = if w.needs_fresh_process() {
                    listmem_in_child(r.allocator, iterations)?
                } else {
                    run(w, r.allocator, iterations)
                        .expect("filtered to supported pairs")
                        .value
                };
                r.runs.push(v);
            }
        }
        for r in rs {
            if o.json {
                print_json(&r);
            } else {
                print_row(&r);
            }
            results.push(r);
        }
    }
    if !o.json && !results.is_empty() {
        println!("\nmedians (ns/op; listmem bytes/node; *_Nt Mop/s, higher is better)");
        print!("{:<10}", "");
        for a in &o.allocators {
            print!(" {:>12}", a.name());
        }
        println!();
        for &w in &o.workloads {
            print!("{:<10}", w.name());
            for &a in &o.allocators {
                match results.iter().find(|r| r.workload == w && r.allocator == a) {
                    Some(r) => print!(" {:>12.2}", median(&r.runs)),
                    None => print!(" {:>12}", "-"),
                }
            }
            println!();
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    // Die quietly when the reader of stdout goes away (`| head`), as C programs do,
    // instead of panicking on the failed print.
    // SAFETY: restoring a signal's default disposition at startup, before any thread.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Hidden mode: one listmem measurement in this fresh process.
    if let [flag, alloc, nodes] = args.as_slice() {
        if flag == "--listmem-child" {
            let (Some(a), Ok(nodes)) = (Allocator::from_name(alloc), nodes.parse()) else {
                return ExitCode::from(2);
            };
            let s = run(Workload::Listmem, a, nodes).expect("every allocator runs listmem");
            println!("{:.6}", s.value);
            return ExitCode::SUCCESS;
        }
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", usage_text());
        return ExitCode::SUCCESS;
    }
    let o = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}\n{}", usage_text());
            return ExitCode::from(2);
        }
    };
    match bench(&o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
