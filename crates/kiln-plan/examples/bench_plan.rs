//! `just bench-plan`: plan 1,000 pipeline files × a 10-cell matrix (10,000 images) written to a
//! temporary folder, and report the time of loading (kiln-syntax) and of planning (kiln-plan),
//! best of a few runs, measured side by side in one process.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kiln_plan::{FakeDigests, PlanOptions, ToolVersions};
use kiln_syntax::{LoadOptions, RealFs};

const PIPELINES: usize = 1_000;
const RUNS: usize = 3;

fn pipeline(i: usize) -> String {
    // Ten cells; every pipeline its own ISO, so nothing dedups across files except by design.
    format!(
        r#"pipeline "img-{i}-{{release}}-{{flavor}}" {{
    matrix {{
        release "a" "b" "c" "d" "e"
        flavor "min" "full"
    }}
    source "https://mirror.example.org/iso-{i}.iso" checksum="sha256:{sum:064x}"
    disk size="20GiB"
    machine cpus=2 memory="2GiB"
    install kickstart inline="text\nreboot --eject\n# {{release}}" timeout="40m"
    customize cloud-init {{
        package "pkg-{{flavor}}" "curl"
        run "echo {{release}} > /etc/release"
    }}
    boot-test timeout="5m"
    output format="qcow2" compression="zstd"
    publish glance name="img-{i}-{{release}}-{{flavor}}" {{
        property os_distro="fedora"
        tag "{{flavor}}"
    }}
}}
"#,
        sum = i + 1
    )
}

fn main() {
    let dir = std::env::temp_dir().join(format!("kiln-bench-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for i in 0..PIPELINES {
        std::fs::write(dir.join(format!("p{i:04}.kdl")), pipeline(i)).expect("write");
    }
    let mut load_best = Duration::MAX;
    let mut plan_best = Duration::MAX;
    let mut steps = 0;
    let mut images = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let ws = kiln_syntax::load(&[PathBuf::from(&dir)], &LoadOptions::default(), &RealFs);
        load_best = load_best.min(t.elapsed());
        assert!(ws.is_ok(), "{}", ws.render(false));
        let t = Instant::now();
        let options = PlanOptions {
            tools: ToolVersions::fixed("8.2.2"),
            ..PlanOptions::default()
        };
        let plan = kiln_plan::plan(&ws.pipelines, &options, &FakeDigests::new())
            .unwrap_or_else(|d| panic!("{} problems", d.len()));
        plan_best = plan_best.min(t.elapsed());
        steps = plan.len();
        images = plan.cells().len();
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
    println!("{PIPELINES} pipelines x 10 cells = {images} images, {steps} steps (best of {RUNS})");
    println!(
        "  load (kiln-syntax):   {:>8.1} ms",
        load_best.as_secs_f64() * 1e3
    );
    println!(
        "  plan (kiln-plan):     {:>8.1} ms",
        plan_best.as_secs_f64() * 1e3
    );
    println!(
        "  total:                {:>8.1} ms (target < 1000 ms)",
        (load_best + plan_best).as_secs_f64() * 1e3
    );
}
