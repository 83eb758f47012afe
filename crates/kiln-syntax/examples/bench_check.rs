//! `just bench-syntax`: generates 1,000 pipeline files (with a shared fragment and 5-cell
//! matrices) into a temporary directory and times `kiln_syntax::load` over them, as `kiln check
//! DIR` does. Prints the best and median of several runs.

use std::path::PathBuf;
use std::time::Instant;

use kiln_syntax::{LoadOptions, RealFs, load};

fn main() {
    let files: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let dir = std::env::temp_dir().join(format!("kiln-bench-syntax-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("shared")).expect("create temp dir");
    std::fs::write(
        dir.join("shared/base.kdl"),
        "fragment {\n    machine cpus=2 memory=\"2GiB\"\n    output format=\"qcow2\" compression=\"zstd\"\n    boot-test timeout=\"10m\"\n}\n",
    )
    .expect("write fragment");
    std::fs::write(
        dir.join("preseed.cfg"),
        "d-i debian-installer/locale string en_US\n",
    )
    .expect("write answer file");
    let mut bytes = 0;
    for i in 0..files {
        let text = format!(
            r#"// generated pipeline {i}
pipeline "image-{i}-{{language}}" {{
    include "shared/base.kdl"
    variables {{
        version "12.{i}"
    }}
    matrix {{
        language "en-US" "de-DE" "fr-FR" "ja-JP" "zh-CN"
    }}
    source "https://example.org/debian-{{version}}.iso" checksum="sha256:{:064x}"
    disk size="{}GiB"
    install preseed file="preseed.cfg" timeout="30m"
    customize cloud-init {{
        package "nginx" "curl"
        file "/etc/motd" content="{{pipeline}} {{language}}\n" mode="0644"
        run "echo {{language}} > /etc/kiln-language"
    }}
    publish glance name="debian-{{version}}-{{language}}" visibility="private" {{
        property os_type="linux" os_distro="debian" hw_disk_bus="virtio"
        tag "debian" "{{language}}"
    }}
}}
"#,
            i,
            10 + i % 50
        );
        bytes += text.len();
        std::fs::write(dir.join(format!("p{i:04}.kdl")), text).expect("write pipeline");
    }
    let paths: Vec<PathBuf> = vec![dir.clone()];
    let mut times = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        let ws = load(&paths, &LoadOptions::default(), &RealFs);
        let elapsed = start.elapsed();
        assert!(ws.is_ok(), "{}", ws.render(false));
        assert_eq!(ws.pipelines.len(), files);
        times.push(elapsed);
    }
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
    times.sort();
    println!(
        "kiln check of {files} pipeline files ({} KiB, {} images): best {:.1} ms, median {:.1} ms",
        bytes / 1024,
        files * 5,
        times[0].as_secs_f64() * 1e3,
        times[times.len() / 2].as_secs_f64() * 1e3
    );
}
