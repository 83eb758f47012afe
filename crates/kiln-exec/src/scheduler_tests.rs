//! Scheduler rules, with a fake runner that sleeps, fails or waits for cancellation on demand.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

#[derive(Default)]
struct Fake {
    cached: BTreeSet<usize>,
    fail: BTreeSet<usize>,
    /// Tasks that run until cancelled.
    hang: BTreeSet<usize>,
    sleep_ms: u64,
    ran: Mutex<Vec<usize>>,
    now: AtomicUsize,
    peak: AtomicUsize,
    events: Mutex<Vec<Event>>,
    cancel: Cancel,
}

impl TaskRunner for Fake {
    fn is_cached(&self, i: usize) -> bool {
        self.cached.contains(&i)
    }

    fn run(&self, i: usize, _placement: Placement) -> Result<(), TaskError> {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        self.ran.lock().unwrap().push(i);
        std::thread::sleep(Duration::from_millis(self.sleep_ms));
        let r = if self.hang.contains(&i) {
            self.cancel.cancel();
            while !self.cancel.is_cancelled() {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(TaskError::Cancelled)
        } else if self.fail.contains(&i) {
            Err(TaskError::Failed(format!("task {i} broke")))
        } else {
            Ok(())
        };
        self.now.fetch_sub(1, Ordering::SeqCst);
        r
    }

    fn event(&self, event: &Event) {
        self.events.lock().unwrap().push(event.clone());
    }
}

fn task(name: &str, deps: &[usize], resource: Resource) -> Task {
    Task {
        name: name.into(),
        deps: deps.to_vec(),
        resource,
    }
}

const GUEST: Resource = Resource::Guest {
    vcpus: 1,
    memory_mib: 512,
};

fn host(guests: u32) -> Capacity {
    Capacity {
        guests,
        vcpus: guests,
        memory_mib: 512 * u64::from(guests),
    }
}

fn pools() -> Pools {
    Pools { cpu: 1, io: 4 }
}

/// One pipeline: fetch(0), disk(1) → install(2) → customize(3) → convert(4) → boot-test(5).
fn chain() -> Vec<Task> {
    vec![
        task("fetch", &[], Resource::Io),
        task("disk", &[], Resource::Io),
        task("install", &[0, 1], GUEST),
        task("customize", &[2], GUEST),
        task("convert", &[3], Resource::Cpu),
        task("boot-test", &[4], GUEST),
    ]
}

fn built(r: &Report) -> Vec<usize> {
    (0..r.statuses.len())
        .filter(|&i| matches!(r.statuses[i], TaskStatus::Built { .. }))
        .collect()
}

#[test]
fn runs_every_task_after_its_inputs() {
    let fake = Fake::default();
    let r = run(&chain(), &[host(2)], pools(), &fake, &Cancel::new());
    assert!(r.ok(), "{r:?}");
    let ran = fake.ran.lock().unwrap().clone();
    let pos = |t: usize| ran.iter().position(|&x| x == t).unwrap();
    for (i, t) in chain().iter().enumerate() {
        for &d in &t.deps {
            assert!(pos(d) < pos(i), "{} ran before its input {}", t.name, d);
        }
    }
    assert_eq!(ran.len(), 6);
}

#[test]
fn cached_output_makes_the_whole_upstream_unnecessary() {
    // A second build: the output is cached, so no guest runs at all.
    let fake = Fake {
        cached: [5, 4].into(),
        ..Fake::default()
    };
    let r = run(&chain(), &[host(2)], pools(), &fake, &Cancel::new());
    assert!(r.ok());
    assert!(fake.ran.lock().unwrap().is_empty());
    assert_eq!(r.statuses[5], TaskStatus::Cached);
    assert_eq!(r.statuses[2], TaskStatus::NotNeeded);
}

#[test]
fn changed_customize_reruns_from_customize_not_install() {
    // install and the fetches are cached; customize's key changed, so it and what follows rerun.
    let fake = Fake {
        cached: [0, 1, 2].into(),
        ..Fake::default()
    };
    let r = run(&chain(), &[host(2)], pools(), &fake, &Cancel::new());
    assert!(r.ok());
    assert_eq!(built(&r), vec![3, 4, 5]);
    assert_eq!(r.statuses[2], TaskStatus::Cached);
}

#[test]
fn failure_skips_dependents_and_lets_independent_branches_finish() {
    // Two pipelines sharing the fetch; the first one's install fails.
    let mut tasks = chain();
    tasks.push(task("b/disk", &[], Resource::Io)); // 6
    tasks.push(task("b/install", &[0, 6], GUEST)); // 7
    tasks.push(task("b/convert", &[7], Resource::Cpu)); // 8
    let fake = Fake {
        fail: [2].into(),
        ..Fake::default()
    };
    let r = run(&tasks, &[host(2)], pools(), &fake, &Cancel::new());
    assert!(!r.ok());
    assert_eq!(r.failures(), vec![(2, "task 2 broke")]);
    for i in [3, 4, 5] {
        assert_eq!(
            r.statuses[i],
            TaskStatus::Skipped {
                because: "install".into()
            },
            "task {i}"
        );
    }
    assert!(built(&r).contains(&8), "independent branch finished");
}

#[test]
fn every_failure_is_reported() {
    let tasks = vec![
        task("a", &[], Resource::Io),
        task("b", &[], Resource::Io),
        task("c", &[0, 1], Resource::Io),
    ];
    let fake = Fake {
        fail: [0, 1].into(),
        ..Fake::default()
    };
    let r = run(&tasks, &[], pools(), &fake, &Cancel::new());
    assert_eq!(r.failures().len(), 2);
    assert!(matches!(r.statuses[2], TaskStatus::Skipped { .. }));
}

#[test]
fn guests_in_parallel_up_to_host_capacity() {
    let tasks: Vec<Task> = (0..6).map(|i| task(&format!("g{i}"), &[], GUEST)).collect();
    let fake = Fake {
        sleep_ms: 60,
        ..Fake::default()
    };
    let r = run(&tasks, &[host(2)], pools(), &fake, &Cancel::new());
    assert!(r.ok());
    assert_eq!(fake.peak.load(Ordering::SeqCst), 2);
}

#[test]
fn guests_spread_over_several_hosts() {
    let tasks: Vec<Task> = (0..4).map(|i| task(&format!("g{i}"), &[], GUEST)).collect();
    let fake = Fake {
        sleep_ms: 60,
        ..Fake::default()
    };
    let r = run(&tasks, &[host(1), host(1)], pools(), &fake, &Cancel::new());
    assert!(r.ok());
    assert_eq!(fake.peak.load(Ordering::SeqCst), 2);
    let hosts: BTreeSet<Placement> = fake
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Started { placement, .. } => Some(*placement),
            Event::Ended { .. } => None,
        })
        .collect();
    assert_eq!(hosts, [Placement::Host(0), Placement::Host(1)].into());
}

#[test]
fn memory_limits_guests_even_with_free_slots() {
    let big = Resource::Guest {
        vcpus: 1,
        memory_mib: 1024,
    };
    let tasks: Vec<Task> = (0..3).map(|i| task(&format!("g{i}"), &[], big)).collect();
    let fake = Fake {
        sleep_ms: 40,
        ..Fake::default()
    };
    let cap = Capacity {
        guests: 4,
        vcpus: 4,
        memory_mib: 2047,
    };
    let r = run(&tasks, &[cap], pools(), &fake, &Cancel::new());
    assert!(r.ok());
    assert_eq!(fake.peak.load(Ordering::SeqCst), 1);
}

#[test]
fn cpu_pool_bounds_local_work() {
    let tasks: Vec<Task> = (0..4)
        .map(|i| task(&format!("c{i}"), &[], Resource::Cpu))
        .collect();
    let fake = Fake {
        sleep_ms: 40,
        ..Fake::default()
    };
    let r = run(&tasks, &[], Pools { cpu: 2, io: 1 }, &fake, &Cancel::new());
    assert!(r.ok());
    assert_eq!(fake.peak.load(Ordering::SeqCst), 2);
}

#[test]
fn guest_too_big_for_every_host_fails_instead_of_waiting() {
    let tasks = vec![task(
        "huge",
        &[],
        Resource::Guest {
            vcpus: 64,
            memory_mib: 1,
        },
    )];
    let fake = Fake::default();
    let r = run(&tasks, &[host(2)], pools(), &fake, &Cancel::new());
    let f = r.failures();
    assert_eq!(f.len(), 1);
    assert!(
        f[0].1.contains("no host can run a guest of 64 vCPUs"),
        "{}",
        f[0].1
    );
}

#[test]
fn cancel_stops_new_work_and_marks_the_running_task_cancelled() {
    let fake = Fake {
        hang: [2].into(),
        ..Fake::default()
    };
    let cancel = fake.cancel.clone();
    let r = run(&chain(), &[host(2)], pools(), &fake, &cancel);
    assert!(r.cancelled);
    assert!(!r.ok());
    assert_eq!(r.statuses[2], TaskStatus::Cancelled);
    for i in [3, 4, 5] {
        assert!(
            matches!(r.statuses[i], TaskStatus::Skipped { .. }),
            "task {i}: {:?}",
            r.statuses[i]
        );
    }
    assert!(!fake.ran.lock().unwrap().contains(&3));
}

#[test]
fn out_of_order_tasks_are_refused() {
    let tasks = vec![task("a", &[1], Resource::Io), task("b", &[], Resource::Io)];
    assert!(check_order(&tasks).unwrap_err().contains("task `a`"));
}
