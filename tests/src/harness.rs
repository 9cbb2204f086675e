//! A small test runner for cases that share booted VMs: cases come in groups
//! (one group per disk image or source), a group's cases run one after the
//! other so they reuse its VM, and a few groups run at once. Every case is
//! isolated with `catch_unwind`; a group's teardown always runs. Output follows
//! libtest (`test NAME ... ok|FAILED`), and the last line is `N passed, N failed`.

use anyhow::Result;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// A case body.
pub type CaseFn<C> = Box<dyn FnOnce(&C) -> Result<()> + Send>;

/// A named case.
pub struct Case<C> {
    /// Full name, `group::case`.
    pub name: String,
    /// The body.
    pub run: CaseFn<C>,
}

/// Cases that run in order on one worker, then a teardown.
pub struct Group<C> {
    /// Prefix of its cases' names.
    pub name: String,
    /// Rough cost, to start the heavy groups first.
    pub weight: u32,
    /// The cases.
    pub cases: Vec<Case<C>>,
    /// Runs after the cases (e.g. stop this group's VM), when any case ran.
    pub teardown: Option<CaseFn<C>>,
}

impl<C> Group<C> {
    /// An empty group.
    pub fn new(name: impl Into<String>, weight: u32) -> Group<C> {
        Group {
            name: name.into(),
            weight,
            cases: Vec::new(),
            teardown: None,
        }
    }

    /// Adds a case named `<group>::<name>`.
    pub fn case(
        &mut self,
        name: impl AsRef<str>,
        f: impl FnOnce(&C) -> Result<()> + Send + 'static,
    ) {
        self.cases.push(Case {
            name: format!("{}::{}", self.name, name.as_ref()),
            run: Box::new(f),
        });
    }
}

/// Command-line options, libtest style: positional substrings select cases,
/// `--skip S` drops them, `--exact` wants whole names, `--list` only lists,
/// `--test-threads N` sets the parallelism. Other libtest flags are accepted
/// and ignored, so `cargo test -- …` works.
#[derive(Debug, Clone)]
pub struct Options {
    /// Substrings (or exact names) to run; empty means all.
    pub filters: Vec<String>,
    /// Substrings to skip.
    pub skip: Vec<String>,
    /// Whole-name matching.
    pub exact: bool,
    /// Print the names and exit.
    pub list: bool,
    /// Run only ignored tests (there are none: nothing runs).
    pub ignored_only: bool,
    /// Groups at once.
    pub threads: usize,
}

impl Options {
    /// Parses `args` (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>, default_threads: usize) -> Options {
        let mut o = Options {
            filters: Vec::new(),
            skip: Vec::new(),
            exact: false,
            list: false,
            ignored_only: false,
            threads: default_threads,
        };
        let mut it = args.into_iter();
        // libtest flags that take a value as the next argument.
        const WITH_VALUE: [&str; 7] = [
            "--color",
            "--format",
            "--logfile",
            "--shuffle-seed",
            "-Z",
            "--report-time",
            "--ensure-time",
        ];
        while let Some(a) = it.next() {
            if let Some(v) = a.strip_prefix("--test-threads=") {
                o.threads = v.parse().unwrap_or(default_threads).max(1);
            } else if a == "--test-threads" {
                o.threads = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(default_threads)
                    .max(1);
            } else if let Some(v) = a.strip_prefix("--skip=") {
                o.skip.push(v.to_string());
            } else if a == "--skip" {
                o.skip.extend(it.next());
            } else if a == "--exact" {
                o.exact = true;
            } else if a == "--list" {
                o.list = true;
            } else if a == "--ignored" {
                o.ignored_only = true;
            } else if WITH_VALUE.contains(&a.as_str()) {
                let _ = it.next();
            } else if a.starts_with('-') {
                // --nocapture, --quiet, --include-ignored, --show-output, …
            } else {
                o.filters.push(a);
            }
        }
        o
    }

    /// Whether the case named `name` runs.
    pub fn selects(&self, name: &str) -> bool {
        if self.ignored_only {
            return false;
        }
        let hit = |f: &String| {
            if self.exact {
                name == f
            } else {
                name.contains(f.as_str())
            }
        };
        (self.filters.is_empty() || self.filters.iter().any(hit)) && !self.skip.iter().any(hit)
    }
}

/// The outcome of a run.
#[derive(Debug, Default)]
pub struct Summary {
    /// Names of the cases that passed.
    pub passed: Vec<String>,
    /// Failed cases with their details.
    pub failed: Vec<(String, String)>,
}

/// Serialised printing of results.
pub struct Printer {
    lock: Mutex<()>,
    quiet: bool,
}

impl Default for Printer {
    fn default() -> Self {
        Printer::new()
    }
}

impl Printer {
    /// A printer on stdout.
    pub fn new() -> Printer {
        Printer {
            lock: Mutex::new(()),
            quiet: false,
        }
    }

    /// A printer that prints nothing (for the harness's own tests).
    pub fn quiet() -> Printer {
        Printer {
            lock: Mutex::new(()),
            quiet: true,
        }
    }

    /// Prints one case's line (and its failure details, indented).
    pub fn result(&self, name: &str, elapsed: Duration, failure: Option<&str>) {
        if self.quiet {
            return;
        }
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = std::io::stdout().lock();
        let secs = elapsed.as_secs_f64();
        match failure {
            None => {
                let _ = writeln!(out, "test {name} ... ok ({secs:.1} s)");
            }
            Some(d) => {
                let _ = writeln!(out, "test {name} ... FAILED ({secs:.1} s)");
                for l in d.lines() {
                    let _ = writeln!(out, "    {l}");
                }
            }
        }
        let _ = out.flush();
    }

    /// Prints a free line.
    pub fn line(&self, s: &str) {
        if self.quiet {
            return;
        }
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{s}");
        let _ = out.flush();
    }
}

thread_local! {
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    static IN_CASE: RefCell<bool> = const { RefCell::new(false) };
}

/// Records the panic message of a running case (other threads: the previous hook).
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !IN_CASE.with(|c| *c.borrow()) {
                previous(info);
                return;
            }
            let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
                s.to_string()
            } else if let Some(s) = info.payload().downcast_ref::<String>() {
                s.clone()
            } else {
                "(non-string panic payload)".to_string()
            };
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            PANIC.with(|p| *p.borrow_mut() = Some(format!("panicked{at}: {msg}")));
        }));
    });
}

/// Runs one body, turning an error or a panic into failure details.
pub fn run_one<C>(ctx: &C, f: CaseFn<C>) -> (Duration, Option<String>) {
    install_panic_hook();
    let start = Instant::now();
    IN_CASE.with(|c| *c.borrow_mut() = true);
    let r = panic::catch_unwind(AssertUnwindSafe(|| f(ctx)));
    IN_CASE.with(|c| *c.borrow_mut() = false);
    let failure = match r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("{e:#}")),
        Err(_) => Some(
            PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "panicked".to_string()),
        ),
    };
    (start.elapsed(), failure)
}

/// Runs the selected cases of `groups`, `opts.threads` groups at once.
pub fn run_groups<C: Sync>(
    ctx: &C,
    groups: Vec<Group<C>>,
    opts: &Options,
    printer: &Printer,
) -> Summary {
    let mut groups: Vec<Group<C>> = groups
        .into_iter()
        .filter_map(|mut g| {
            g.cases.retain(|c| opts.selects(&c.name));
            (!g.cases.is_empty()).then_some(g)
        })
        .collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.weight));
    let queue = Mutex::new(VecDeque::from(groups));
    let summary = Mutex::new(Summary::default());
    let record = |name: &str, elapsed: Duration, failure: Option<String>| {
        printer.result(name, elapsed, failure.as_deref());
        let mut s = summary.lock().unwrap_or_else(|e| e.into_inner());
        match failure {
            None => s.passed.push(name.to_string()),
            Some(d) => s.failed.push((name.to_string(), d)),
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..opts.threads.max(1) {
            scope.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                let Some(g) = next else { break };
                for c in g.cases {
                    let (elapsed, failure) = run_one(ctx, c.run);
                    record(&c.name, elapsed, failure);
                }
                if let Some(t) = g.teardown {
                    let (elapsed, failure) = run_one(ctx, t);
                    if failure.is_some() {
                        record(&format!("{}::teardown", g.name), elapsed, failure);
                    }
                }
            });
        }
    });
    summary.into_inner().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_like_libtest() {
        let o = Options::parse(
            args(&["--test-threads=3", "gpt", "--skip", "zip", "--nocapture"]),
            2,
        );
        assert_eq!(o.threads, 3);
        assert!(o.selects("gpt.img::part/1::tar"));
        assert!(!o.selects("gpt.img::part/1::zip"));
        assert!(!o.selects("mbr.img::levels"));
        let o = Options::parse(args(&["--exact", "a::b", "--format", "pretty"]), 2);
        assert!(o.selects("a::b") && !o.selects("a::bc"));
        assert!(o.filters == ["a::b"]);
        assert!(!Options::parse(args(&["--ignored"]), 2).selects("x"));
    }

    #[test]
    fn failures_and_panics_are_recorded_and_teardown_runs() {
        let ran = Mutex::new(Vec::<String>::new());
        let mut g: Group<Mutex<Vec<String>>> = Group::new("g", 1);
        g.case("ok", |r| {
            r.lock().unwrap().push("ok".into());
            Ok(())
        });
        g.case("err", |_| anyhow::bail!("boom"));
        g.case("panic", |_| panic!("kaboom"));
        g.teardown = Some(Box::new(|r| {
            r.lock().unwrap().push("teardown".into());
            Ok(())
        }));
        let s = run_groups(
            &ran,
            vec![g],
            &Options::parse(Vec::new(), 2),
            &Printer::quiet(),
        );
        assert_eq!(s.passed, ["g::ok"]);
        assert_eq!(s.failed.len(), 2);
        assert!(s.failed[0].1.contains("boom"));
        assert!(s.failed[1].1.contains("kaboom"), "{:?}", s.failed[1]);
        assert_eq!(*ran.lock().unwrap(), ["ok", "teardown"]);
    }
}
