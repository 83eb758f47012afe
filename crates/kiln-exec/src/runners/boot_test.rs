//! `boot-test`: boots a throwaway overlay of the converted image the way a cloud would — a fresh
//! NoCloud seed with a new instance id — and requires proof on the serial console: a nonce printed
//! by the seed's `runcmd` (so cloud-init ran on first boot), plus every `expect` line of the
//! pipeline. The artifact is the console log; the overlay and seed are removed.

use std::time::Duration;

use kiln_cache::Staging;
use kiln_plan::StepParams;

use super::customize::overlay;
use super::guest_step::GuestStep;
use super::media::build_iso;
use super::{RunError, StepCx, fail, nonce};
use crate::console::Pattern;
use crate::guest::Completion;

/// Used when the plan gives none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

pub(super) fn run(cx: &StepCx<'_>, staging: &mut Staging) -> Result<(), RunError> {
    let step = cx.step;
    let StepParams::BootTest(p) = &step.params else {
        return fail(format!("step `{}` is not boot-test", step.id));
    };
    let guest = GuestStep::prepare(cx)?;
    let scratch = guest.scratch.clone();
    let (image, format) = cx.disk("image")?;
    let disk = scratch.join("boot-test.qcow2");
    let _ = std::fs::remove_file(&disk);
    overlay(cx, image, format, &disk, None)?;

    let nonce = nonce();
    let seed_dir = scratch.join("seed");
    let _ = std::fs::remove_dir_all(&seed_dir);
    std::fs::create_dir_all(&seed_dir)
        .or_else(|e| fail(format!("creating `{}`: {e}", seed_dir.display())))?;
    let proof = format!("KILN-BOOT-OK {nonce}");
    let user_data = format!(
        "#cloud-config\nruncmd:\n  - [sh, -c, 'echo \"{proof}\" > /dev/ttyS0']\npower_state:\n  mode: poweroff\n  delay: now\n"
    );
    let meta = format!("instance-id: kiln-boot-{nonce}\nlocal-hostname: kiln-boot-test\n");
    for (name, text) in [("user-data", &user_data), ("meta-data", &meta)] {
        std::fs::write(seed_dir.join(name), text)
            .or_else(|e| fail(format!("step `{}`: writing `{name}`: {e}", step.id)))?;
    }
    let seed = scratch.join("seed.iso");
    build_iso(&cx.env.mkisofs, &seed_dir, "cidata", &seed)?;

    let console_log = guest.console_log();
    let domain = guest.seeded_domain(disk, seed);
    let spec = guest.guest(
        domain,
        Pattern::substring(proof.clone()),
        None,
        Completion::SuccessLine,
        DEFAULT_TIMEOUT,
    );
    cx.log.line(format_args!("boot-test: nonce `{nonce}`"));
    let outcome = guest.run(&spec)?;
    let missing: Vec<&String> = p
        .expect
        .iter()
        .filter(|e| !outcome.console.contains(e.as_str()))
        .collect();
    if !missing.is_empty() {
        let tail: Vec<&str> = outcome.console.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return fail(format!(
            "step `{}`: the console never showed {}; console `{}`, last lines:\n  | {}",
            step.id,
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", "),
            console_log.display(),
            crate::printable(&tail.join("\n  | "))
        ));
    }
    std::fs::write(staging.path("console-log.txt"), &outcome.console)
        .or_else(|e| fail(format!("step `{}`: {e}", step.id)))
}
