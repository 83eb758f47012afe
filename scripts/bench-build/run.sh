#!/usr/bin/env bash
# Side-by-side benchmark of a full image build from kiln's Debian fixture installer (fixtures/debian):
# kiln (release) vs Packer 1.6.6 with the same answers, TCG, 2 vCPUs, 1 GiB, a 2 GiB disk.
#
#   scripts/bench-build/run.sh [--rounds N] [--only kiln,packer]
#
#   kiln    "$KILN_BIN" build bench-build.kdl --accel tcg --no-publish --cache-dir <fresh dir>: install
#           (direct kernel boot, preseed injected into the initrd), customize (cloud-init NoCloud seed),
#           convert to a zstd qcow2. Rebuild: rebuild.kdl (bench-build.kdl with another motd), same cache.
#   packer  prepare what kiln prepares itself (kernel and initrd out of the ISO, the same augmented
#           preseed appended as a cpio, the same cloud-init user-data on a cidata ISO), then
#           packer-install.json (qemu builder, -kernel/-initrd/-append, communicator none), then
#           packer-customize.json (disk_image on a copy of build 1's output, the seed as
#           -cdrom), then qemu-img convert -c -o compression_type=zstd. Rebuild after the motd change:
#           "packer -force" reruns both builds (one template set, one output folder: what a Packer
#           user does), "packer split" reruns build 2 + the convert on the kept install output.
#
# Each round runs kiln's pair (cold, rebuild) and Packer's three builds (cold, -force, split), one
# guest at a time, kiln first in odd rounds and Packer first in even ones. Every output is checked
# (qemu-img check, zstd compression type, /etc/motd read back with debugfs, the success lines on the
# serial consoles). Prints a table of median seconds, the ratio to the fastest of each group and each
# round's value; the load average is sampled every 10 s. Everything stays in $BENCH_DIR (default
# /tmp/kiln-bench-build): tool logs, serial consoles, results.tsv, loadavg.log.
# Env: KILN_BIN (default target/release/kiln), ISO (default: fixtures/debian/build.sh), TIMEOUT per
# tool run (default 2400 s), KEEP=1 keeps the images.
set -euo pipefail
shopt -s inherit_errexit

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
rounds=1
only=kiln,packer
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run: unknown argument $1" >&2; exit 2 ;;
    esac
done
timeout_s=${TIMEOUT:-2400}
work=${BENCH_DIR:-/tmp/kiln-bench-build}
kiln_bin=${KILN_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/kiln}
mkdir -p "$work"
chmod 755 "$work"
log() { echo "bench: $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
over() { awk -v a="$1" -v b="$(now)" -v l="$2" 'BEGIN { exit !(b - a > l) }'; }

tools=()
for t in kiln packer; do
    [[ ",$only," == *",$t,"* ]] && tools+=("$t")
done
[ ${#tools[@]} -gt 0 ] || { echo "run: nothing to run (--only kiln,packer)" >&2; exit 2; }
if [[ " ${tools[*]} " == *" kiln "* ]] && [ ! -x "$kiln_bin" ]; then
    echo "run: no kiln binary at $kiln_bin (cargo build --release --locked -p kiln, or set KILN_BIN)" >&2
    exit 1
fi
if [[ " ${tools[*]} " == *" packer "* ]] && ! command -v packer >/dev/null; then
    echo "run: apt-get install packer (1.6.6)" >&2
    exit 1
fi
for c in qemu-img xorriso cpio debugfs python3; do
    command -v "$c" >/dev/null || { echo "run: $c is missing (scripts/setup-host.sh)" >&2; exit 1; }
done

iso=${ISO:-$("$repo/fixtures/debian/build.sh")}
preseed="$here/preseed.cfg"
[ -f "$iso" ] && [ -f "$preseed" ] || { echo "run: no ISO ($iso) or preseed ($preseed)" >&2; exit 1; }
ln -sfn "$iso" "$here/fixture.iso"
"$repo/scripts/start-libvirt.sh"

# packer and kiln run in their own process group (setsid): stop_group interrupts the group, waits up
# to 20 s for a clean exit, then kills what is left of it (Packer 1.6.6 waiting for a shutdown with
# no communicator ignores the interrupt; its qemu is in the group).
current_pid='' load_pid=''
stop_group() {
    kill -INT -- "-$1" 2>/dev/null || return 0
    for _ in $(seq 1 40); do
        kill -0 -- "-$1" 2>/dev/null || return 0
        sleep 0.5
    done
    kill -KILL -- "-$1" 2>/dev/null || true
}
cleanup() {
    [ -z "$current_pid" ] || stop_group "$current_pid"
    [ -z "$load_pid" ] || kill "$load_pid" 2>/dev/null || true
    [ -z "${cg:-}" ] || rmdir "$cg" 2>/dev/null || true
}
trap cleanup EXIT
trap "exit 130" INT TERM

# CPU fairness on a shared machine: libvirt puts every guest (kiln's and other sessions') in the
# cgroup-v1 cpu group /machine, which as a whole weighs as much as one busy thread outside it. A
# Packer qemu started from a shell competes outside it, as one more thread per vCPU, and gets several
# times the CPU of a libvirt guest whenever other guests run. So Packer's process group runs in its
# own cpu cgroup under /machine, next to the libvirt guests (PACKER_CGROUP=0 leaves it where it is).
cg=''
if [ "${PACKER_CGROUP:-1}" = 1 ] && [ -d /sys/fs/cgroup/cpu/machine ]; then
    cg=/sys/fs/cgroup/cpu/machine/kiln-bb-packer-$$
    mkdir -p "$cg" 2>/dev/null || cg=''
fi
[ -n "$cg" ] || log "Packer runs outside libvirt's cpu cgroup (/machine): on a machine shared with other guests it gets more CPU than kiln's guests"

# run_bg LOG CMD...: CMD in its own session, output to LOG, stopped after $timeout_s; its status.
# With IN_CG set, CMD starts in the cgroup $cg.
run_bg() {
    local out=$1 pid t0 rc=0
    shift
    t0=$(now)
    if [ -n "${IN_CG:-}" ] && [ -n "$cg" ]; then
        set -- sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg" "$@"
    fi
    setsid "$@" >"$out" 2>&1 &
    pid=$!
    current_pid=$pid
    while kill -0 "$pid" 2>/dev/null; do
        if over "$t0" "$timeout_s"; then log "timeout after $timeout_s s: $*"; stop_group "$pid"; fi
        sleep 0.5
    done
    wait "$pid" || rc=$?
    current_pid=''
    return $rc
}

# The load average while the benchmark runs (the machine is shared).
(while :; do echo "$(date +%s) $(cut -d' ' -f1-3 /proc/loadavg)"; sleep 10; done) >"$work/loadavg.log" &
load_pid=$!

# check_image QCOW2 MOTD: a sound qcow2, zstd-compressed, whose root file system (partition 1 at
# 1 MiB) holds MOTD in /etc/motd and the run step's file. Prints "ok" or the first problem.
check_image() {
    local img=$1 want=$2 raw got ct
    [ -f "$img" ] || { echo "no image ($img)"; return; }
    qemu-img check -q "$img" >/dev/null 2>&1 || { echo "qemu-img check failed"; return; }
    ct=$(qemu-img info --output=json "$img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["format-specific"]["data"].get("compression-type", "?"))')
    [ "$ct" = zstd ] || { echo "compression type $ct"; return; }
    raw=$(mktemp -p "$work" raw.XXXXXX)
    qemu-img convert -O raw "$img" "$raw"
    got=$(debugfs -R 'cat /etc/motd' "$raw?offset=1048576" 2>/dev/null || true)
    if [ "$got" != "$(printf '%b' "$want")" ]; then
        rm -f "$raw"; echo "motd is '$got', not '$want'"; return
    fi
    got=$(debugfs -R 'cat /var/lib/bench-build/customized-at' "$raw?offset=1048576" 2>/dev/null || true)
    rm -f "$raw"
    [ -n "$got" ] || { echo "no /var/lib/bench-build/customized-at"; return; }
    echo ok
}

motd_cold='Built by bench-build (cold).\n'
motd_rebuild() { echo "Built by bench-build (rebuild, round $1).\n"; }
run_cmd='mkdir -p /var/lib/bench-build && date -u +%Y-%m-%dT%H:%M:%SZ > /var/lib/bench-build/customized-at'

# ---------------------------------------------------------------- kiln
# kiln_build DIR TAG PIPELINE: one `kiln build` (JSON events to DIR/TAG.json); sets secs and image.
kiln_build() {
    local d=$1 tag=$2 pipeline=$3 t0 rc=0
    t0=$(now)
    t_start=$(date +%s)
    run_bg "$d/$tag.json" "$kiln_bin" build "$pipeline" --accel tcg --no-publish --json \
        --cache-dir "$d/kiln-cache" || rc=$?
    secs=$(since "$t0")
    t_end=$(date +%s)
    [ $rc -eq 0 ] || log "kiln exited with $rc (see $d/$tag.json)"
    # Each step's status and time, and the image from the convert step's artifact folder.
    python3 - "$d/$tag.json" >"$d/$tag.steps" <<'PY' || true
import json, sys
for line in open(sys.argv[1], errors="replace"):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("event") == "ended":
        print(f'{e.get("step")}\t{e.get("status")}\t{e.get("elapsed")}')
PY
    image=$(ls -t "$d/kiln-cache/artifacts-v1"/*/image.qcow2 2>/dev/null | head -n1 || true)
    [ $rc -eq 0 ] || image=''
}

run_kiln() { # DIR ROUND: sets r_cold r_rebuild (seconds or FAIL) and their checks
    local d=$1 round=$2 motd
    rm -rf "$d/kiln-cache"
    mkdir -p "$d/kiln-cache"
    chmod 755 "$d/kiln-cache"
    log "round $round: kiln cold build ..."
    kiln_build "$d" cold "$here/bench-build.kdl"
    r_kiln_cold=$secs
    c_kiln_cold=$( [ -n "$image" ] && check_image "$image" "$motd_cold" || echo "build failed")
    log "round $round: kiln cold $secs s: $c_kiln_cold ($(cut -f1,2 "$d/cold.steps" | tr '\t\n' ': ' ))"
    [ "$c_kiln_cold" = ok ] || r_kiln_cold=FAIL
    span[kiln-cold]="$t_start"$'\t'"$t_end"
    same_inputs_as_kiln "$d"
    sed 's|(cold)|(rebuild, round '"$round"')|' "$here/bench-build.kdl" >"$here/rebuild.kdl"
    motd=$(motd_rebuild "$round")
    "$kiln_bin" plan "$here/rebuild.kdl" --cache-dir "$d/kiln-cache" >"$d/rebuild.plan" 2>&1 || true
    log "round $round: kiln rebuild (customize-only change) ..."
    kiln_build "$d" rebuild "$here/rebuild.kdl"
    r_kiln_rebuild=$secs
    c_kiln_rebuild=$( [ -n "$image" ] && check_image "$image" "$motd" || echo "build failed")
    log "round $round: kiln rebuild $secs s: $c_kiln_rebuild ($(cut -f1,2 "$d/rebuild.steps" | tr '\t\n' ': ' ))"
    [ "$c_kiln_rebuild" = ok ] || r_kiln_rebuild=FAIL
    span[kiln-rebuild]="$t_start"$'\t'"$t_end"
    rm -f "$here/rebuild.kdl"
    cp "$d/kiln-cache/runs"/*/*.console.log "$d/" 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$d/kiln-cache"
}

# ---------------------------------------------------------------- Packer
# What kiln does inside its build, done by hand for Packer (and timed with it).
# prep_install DIR: DIR/vmlinuz and DIR/initrd.gz (the ISO's, with the preseed kiln's
# debian-installer profile writes appended as a gzip'd newc cpio: the user's file, a comment, the
# power-off line and `( <the user's late_command> ) && echo KILN-INSTALL-OK > /dev/ttyS0`; run.sh
# compares it with kiln's own after kiln's cold build).
prep_install() {
    local d=$1
    mkdir -p "$d/answers"
    xorriso -osirrox on -indev "$iso" -extract /install.amd/vmlinuz "$d/vmlinuz" \
        -extract /install.amd/initrd.gz "$d/initrd.gz" 2>/dev/null
    chmod u+w "$d/vmlinuz" "$d/initrd.gz"
    python3 - "$preseed" >"$d/answers/preseed.cfg" <<'PY'
import sys
text = open(sys.argv[1]).read()
late = None
for line in text.splitlines():
    if line.lstrip().startswith("#"):
        continue
    words = line.split(None, 3)
    if len(words) >= 2 and words[1] == "preseed/late_command":
        late = words[3].strip() if len(words) > 3 else None
done = "echo KILN-INSTALL-OK > /dev/ttyS0"
late = f"( {late} ) && {done}" if late else done
if text and not text.endswith("\n"):
    text += "\n"
text += "# Added by kiln's debian-installer profile: power off when done, and say so.\n"
text += "d-i debian-installer/exit/poweroff boolean true\n"
text += f"d-i preseed/late_command string {late}\n"
sys.stdout.write(text)
PY
    (cd "$d/answers" && echo preseed.cfg | cpio -o -H newc --quiet | gzip) >>"$d/initrd.gz"
}

# make_seed DIR MOTD: DIR/seed.iso, the NoCloud seed kiln's customize-seed step writes for bench-build.kdl's
# customize block (same user-data: write_files, runcmd, power_state generalizing and powering off).
make_seed() {
    local d=$1 motd=$2
    rm -rf "$d/seed" "$d/seed.iso"
    mkdir -p "$d/seed"
    python3 - "$motd" "$run_cmd" >"$d/seed/user-data" <<'PY'
import json, sys
motd = sys.argv[1].encode().decode("unicode_escape")
run = sys.argv[2]
cond = ("if cloud-init status >/dev/null 2>&1; then cloud-init clean --logs && truncate -s 0 "
        "/etc/machine-id && sync && echo KILN-CUSTOMIZE-OK > /dev/ttyS0 || echo 'KILN-CUSTOMIZE-FAILED: "
        "generalizing failed' > /dev/ttyS0; else cloud-init status --long > /dev/ttyS0 2>&1; echo "
        "'KILN-CUSTOMIZE-FAILED: cloud-init reported errors' > /dev/ttyS0; fi; true")
doc = {
    "power_state": {"condition": cond, "delay": "now", "mode": "poweroff", "timeout": 120},
    "preserve_hostname": True,
    "runcmd": [["sh", "-c", run]],
    "write_files": [{"content": motd, "path": "/etc/motd"}],
}
print("#cloud-config\n" + json.dumps(doc, indent=2, ensure_ascii=False))
PY
    echo "instance-id: kiln-bb-packer-$$-$(date +%s%N)" >"$d/seed/meta-data"
    xorriso -as mkisofs -o "$d/seed.iso" -V cidata -J -R "$d/seed" 2>/dev/null
}

# packer_install DIR TAG / packer_customize DIR TAG / convert DIR: one phase each; status.
packer_install() {
    local d=$1 tag=$2
    : >"$d/$tag-install.serial"
    IN_CG=1 run_bg "$d/$tag-install.log" \
        env PACKER_CACHE_DIR="$d/packer_cache" PACKER_LOG=1 PACKER_LOG_PATH="$d/$tag-install.debug" CHECKPOINT_DISABLE=1 \
        packer build -force -color=false -var "iso=$iso" -var "kernel=$d/vmlinuz" -var "initrd=$d/initrd.gz" \
        -var "output=$d/install" -var "serial=$d/$tag-install.serial" -var "name=kiln-bb-packer-install-$$" \
        "$here/packer-install.json" || return 1
    grep -aq '^KILN-INSTALL-OK' "$d/$tag-install.serial" || { log "packer install: no KILN-INSTALL-OK on the console"; return 1; }
}
packer_customize() {
    local d=$1 tag=$2
    : >"$d/$tag-customize.serial"
    IN_CG=1 run_bg "$d/$tag-customize.log" \
        env PACKER_CACHE_DIR="$d/packer_cache" PACKER_LOG=1 PACKER_LOG_PATH="$d/$tag-customize.debug" CHECKPOINT_DISABLE=1 \
        packer build -force -color=false -var "disk=$d/install/kiln-bb-packer-install-$$.qcow2" \
        -var "seed=$d/seed.iso" -var "output=$d/customize" -var "serial=$d/$tag-customize.serial" \
        -var "name=kiln-bb-packer-customize-$$" "$here/packer-customize.json" || return 1
    grep -aq '^KILN-CUSTOMIZE-OK' "$d/$tag-customize.serial" || { log "packer customize: no KILN-CUSTOMIZE-OK on the console"; return 1; }
}
packer_convert() {
    local d=$1
    rm -f "$d/image.qcow2"
    qemu-img convert -O qcow2 -c -o compression_type=zstd "$d/customize/kiln-bb-packer-customize-$$.qcow2" "$d/image.qcow2"
}

# packer_run DIR TAG MODE MOTD: MODE full (prep + install + seed + customize + convert) or split
# (seed + customize + convert); sets secs (or FAIL) and phases.
packer_run() {
    local d=$1 tag=$2 mode=$3 motd=$4 t0 t1 ok=1
    phases=''
    t0=$(now)
    t_start=$(date +%s)
    if [ "$mode" = full ]; then
        t1=$(now); prep_install "$d" || ok=0; phases+="prep=$(since "$t1") "
        if [ $ok = 1 ]; then t1=$(now); packer_install "$d" "$tag" || ok=0; phases+="install=$(since "$t1") "; fi
    fi
    if [ $ok = 1 ]; then t1=$(now); make_seed "$d" "$motd" || ok=0; phases+="seed=$(since "$t1") "; fi
    if [ $ok = 1 ]; then t1=$(now); packer_customize "$d" "$tag" || ok=0; phases+="customize=$(since "$t1") "; fi
    if [ $ok = 1 ]; then t1=$(now); packer_convert "$d" || ok=0; phases+="convert=$(since "$t1")"; fi
    secs=$(since "$t0")
    t_end=$(date +%s)
    check=$( [ $ok = 1 ] && check_image "$d/image.qcow2" "$motd" || echo "build failed (see $d/$tag-*.log)")
    [ "$check" = ok ] || secs=FAIL
}

run_packer() { # DIR ROUND
    local d=$1 round=$2 motd
    rm -rf "$d/packer_cache" "$d/install" "$d/customize"
    log "round $round: packer cold build (install, customize, convert) ..."
    packer_run "$d" cold full "$motd_cold"
    r_packer_cold=$secs
    span[packer-cold]="$t_start"$'\t'"$t_end"
    log "round $round: packer cold $secs s: $check ($phases)"
    motd=$(motd_rebuild "$round")
    log "round $round: packer -force rebuild (both builds again) ..."
    packer_run "$d" force full "$motd"
    r_packer_force=$secs
    span[packer-force]="$t_start"$'\t'"$t_end"
    log "round $round: packer -force $secs s: $check ($phases)"
    log "round $round: packer split rebuild (build 2 + convert on the kept install) ..."
    packer_run "$d" split split "$motd"
    r_packer_split=$secs
    span[packer-split]="$t_start"$'\t'"$t_end"
    log "round $round: packer split $secs s: $check ($phases)"
    [ -n "${KEEP:-}" ] || rm -rf "$d/packer_cache" "$d/install" "$d/customize" "$d/image.qcow2"
}

# same_inputs_as_kiln DIR (after a cold kiln build in DIR/kiln-cache): Packer's preseed and user-data,
# made here, against the ones kiln cached (answer-media.cpio.gz, the customize-seed's seed.iso).
same_inputs_as_kiln() {
    local d=$1 c="$1/compare" a
    mkdir -p "$c/kiln"
    prep_install "$c" >/dev/null 2>&1 && make_seed "$c" "$motd_cold" >/dev/null 2>&1 || { log "compare: could not make Packer's inputs"; return 0; }
    a=$(ls "$d/kiln-cache/artifacts-v1"/*/answer-media.cpio.gz 2>/dev/null | head -n1 || true)
    [ -z "$a" ] || (cd "$c/kiln" && zcat "$a" | cpio -i --quiet preseed.cfg) || true
    a=$(ls "$d/kiln-cache/artifacts-v1"/*/seed.iso 2>/dev/null | head -n1 || true)
    [ -z "$a" ] || xorriso -osirrox on -indev "$a" -extract /user-data "$c/kiln/user-data" 2>/dev/null || true
    if cmp -s "$c/answers/preseed.cfg" "$c/kiln/preseed.cfg"; then log "compare: Packer's preseed = kiln's answer-media preseed.cfg"
    else log "compare: Packer's preseed differs from kiln's:"; diff "$c/kiln/preseed.cfg" "$c/answers/preseed.cfg" >&2 || true; fi
    if cmp -s "$c/seed/user-data" "$c/kiln/user-data"; then log "compare: Packer's user-data = kiln's customize-seed user-data"
    else log "compare: Packer's user-data differs from kiln's:"; diff "$c/kiln/user-data" "$c/seed/user-data" >&2 || true; fi
    rm -f "$c/vmlinuz" "$c/initrd.gz" "$c/seed.iso"
}

# ---------------------------------------------------------------- rounds
declare -A res
rows=(kiln-cold packer-cold kiln-rebuild packer-force packer-split)
printf 'round\tmeasure\tseconds\tstart\tend\n' >"$work/results.tsv"
declare -A span  # measure -> "start<TAB>end" (epoch seconds) of the last run
for round in $(seq 1 "$rounds"); do
    order=("${tools[@]}")
    if [ $((round % 2)) -eq 0 ]; then
        order=()
        for ((i = ${#tools[@]} - 1; i >= 0; i--)); do order+=("${tools[$i]}"); done
    fi
    for t in "${order[@]}"; do
        d="$work/round$round-$t"
        rm -rf "$d"
        mkdir -p "$d"
        chmod 755 "$d"
        case $t in
            kiln)
                run_kiln "$d" "$round"
                vals=(kiln-cold "$r_kiln_cold" kiln-rebuild "$r_kiln_rebuild") ;;
            packer)
                run_packer "$d" "$round"
                vals=(packer-cold "$r_packer_cold" packer-force "$r_packer_force" packer-split "$r_packer_split") ;;
        esac
        for ((i = 0; i < ${#vals[@]}; i += 2)); do
            res[${vals[$i]}]="${res[${vals[$i]}]:-} ${vals[$((i + 1))]}"
            printf '%s\t%s\t%s\t%s\n' "$round" "${vals[$i]}" "${vals[$((i + 1))]}" "${span[${vals[$i]}]}" >>"$work/results.tsv"
        done
    done
done

median() { tr ' ' '\n' | awk '$1 != "" && $1 != "FAIL"' | sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "FAIL"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A med
for r in "${rows[@]}"; do med[$r]=$(echo "${res[$r]:-}" | median); done
fastest() { for r in "$@"; do echo "${med[$r]}"; done | awk '$1 != "FAIL"' | sort -n | head -n1; }
fast_cold=$(fastest kiln-cold packer-cold)
fast_rebuild=$(fastest kiln-rebuild packer-force packer-split)
ratio() { [ "$1" = FAIL ] || [ -z "$2" ] && echo - || awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
declare -A label=(
    [kiln-cold]="cold: kiln build"
    [packer-cold]="cold: packer install+customize+convert"
    [kiln-rebuild]="rebuild: kiln (motd changed)"
    [packer-force]="rebuild: packer -force (both builds)"
    [packer-split]="rebuild: packer split (build 2+convert)"
)
# load_of MEASURE: the mean 1-min load average sampled while MEASURE ran (all rounds).
load_of() {
    awk -F'\t' -v m="$1" 'NR == FNR { if ($2 == m && $4 != "") { s[++n] = $4; e[n] = $5 }; next }
        { for (i = 1; i <= n; i++) if ($1 >= s[i] && $1 <= e[i]) { sum += $2; c++ } }
        END { if (c) printf "%.1f", sum / c; else print "-" }' "$work/results.tsv" FS=' ' "$work/loadavg.log"
}
load=$(awk '{ s += $2; n++; if ($2 > m) m = $2 } END { if (n) printf "mean %.1f, max %.1f (1-min load average, %d samples)", s / n, m, n }' "$work/loadavg.log")
echo
printf '%-42s %-9s %-6s %-5s %s\n' measure median_s ratio load "per round"
for r in "${rows[@]}"; do
    [ -n "${res[$r]:-}" ] || continue
    case $r in *-cold) f=$fast_cold ;; *) f=$fast_rebuild ;; esac
    printf '%-42s %-9s %-6s %-5s %s\n' "${label[$r]}" "${med[$r]}" "$(ratio "${med[$r]}" "$f")" "$(load_of "$r")" "${res[$r]# }"
done
if [ -n "${res[kiln-rebuild]:-}" ] && [ -n "${res[packer-force]:-}" ]; then
    echo "kiln rebuild / packer -force rebuild: $(ratio "${med[kiln-rebuild]}" "${med[packer-force]}"); / packer split rebuild: $(ratio "${med[kiln-rebuild]}" "${med[packer-split]}") (target <= 0.6)"
    echo "kiln cold / fastest cold: $(ratio "${med[kiln-cold]}" "$fast_cold") (target <= 1.0)"
fi
echo "load average during the run (2 cores, shared machine): $load"
