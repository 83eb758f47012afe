#!/usr/bin/env bash
# Side-by-side benchmark: the same Debian installer CD (fixtures/debian-netboot), the same preseed,
# TCG, 2 vCPUs, 1 GiB, a 4 GiB disk; time from each tool's start to "KILN-PRESEED-READ" on the
# guest's serial console (the preseed's early_command prints it, then powers the guest off).
#
#   scripts/bench-installers/run.sh [--rounds N] [--only virt-install,packer,kiln] [PIPELINE]
#
#   virt-install  --location ISO --initrd-inject preseed.cfg --extra-args "auto=true priority=critical
#                 console=ttyS0,115200n8" (it reads install.amd/{vmlinuz,initrd.gz} off the CD)
#   packer        Packer's qemu builder (packer.json): boots the CD, types at Debian's isolinux menu over
#                 VNC after boot_wait 10s, d-i fetches the preseed from Packer's HTTP server
#   kiln          "$KILN_BIN" build PIPELINE --accel tcg --no-publish --cache-dir <fresh dir>; skipped
#                 when KILN_BIN is unset. The pipeline's `install "preseed"` must take this ISO:
#                 run.sh links it at .kiln/fixtures/debian-netboot.iso in the checkout.
#
# Each round runs every tool once, one after the other, the order reversed every other round. Prints a
# table: tool, seconds to the marker (each round, and the median), ratio of the median to the
# fastest median; also the seconds until the tool returned (kiln and packer) or the domain was off
# (virt-install). Logs and serial consoles stay in $BENCH_DIR (default /tmp/kiln-bench-installers).
# Env: KILN_BIN, ISO (default: fixtures/debian-netboot/build.sh), TIMEOUT per run (default 900 s).
set -euo pipefail
shopt -s inherit_errexit

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
rounds=1
only=virt-install,packer,kiln
pipeline=''
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "run: unknown option $1" >&2; exit 2 ;;
        *) pipeline=$1; shift ;;
    esac
done
timeout_s=${TIMEOUT:-900}
uri=qemu:///system
work=${BENCH_DIR:-/tmp/kiln-bench-installers}
mkdir -p "$work"
chmod 755 "$work"
log() { echo "bench: $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
over() { awk -v a="$1" -v b="$(now)" -v l="$2" 'BEGIN { exit !(b - a > l) }'; }
virsh() { command virsh -q -c "$uri" "$@"; }

iso=${ISO:-$("$repo/fixtures/debian-netboot/build.sh")}
preseed="$here/http/preseed.cfg"
[ -f "$iso" ] && [ -f "$preseed" ] || { echo "run: no ISO ($iso) or preseed ($preseed)" >&2; exit 1; }
mkdir -p "$repo/.kiln/fixtures"
ln -sfn "$iso" "$repo/.kiln/fixtures/debian-netboot.iso"

tools=()
for t in virt-install packer kiln; do
    [[ ",$only," == *",$t,"* ]] || continue
    if [ "$t" = kiln ] && { [ -z "${KILN_BIN:-}" ] || [ -z "$pipeline" ]; }; then
        log "kiln skipped: set KILN_BIN and give a pipeline file (install \"preseed\" on $repo/.kiln/fixtures/debian-netboot.iso)"
        continue
    fi
    tools+=("$t")
done
[ ${#tools[@]} -gt 0 ] || { echo "run: nothing to run" >&2; exit 2; }
command -v virt-install >/dev/null || [[ " ${tools[*]} " != *" virt-install "* ]] || { echo "run: apt-get install virtinst" >&2; exit 1; }
command -v packer >/dev/null || [[ " ${tools[*]} " != *" packer "* ]] || { echo "run: apt-get install packer" >&2; exit 1; }
"$repo/scripts/start-libvirt.sh"

cleanup_domain() {
    virsh destroy "$1" >/dev/null 2>&1 || true
    virsh undefine --nvram "$1" >/dev/null 2>&1 || virsh undefine "$1" >/dev/null 2>&1 || true
}
# packer and kiln run in their own process group (setsid): stop_group interrupts the group, waits up
# to 20 s for a clean exit, then kills what is left of it (Packer 1.6.6 waiting for a shutdown with
# no communicator ignores the interrupt; its qemu is in the group).
current_domain='' current_pid=''
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
    [ -z "$current_domain" ] || cleanup_domain "$current_domain"
}
trap cleanup EXIT
trap "exit 130" INT TERM

# Each run_* sets marker (s to the marker, or "FAIL") and done_s (s until the tool returned or the
# domain was off).
run_virt_install() { # DIR
    local d=$1 name="kiln-bench-vi-$$-$round" t0 st=running
    current_domain=$name
    qemu-img create -q -f qcow2 "$d/disk.qcow2" 4G
    : >"$d/serial.log"
    chmod 644 "$d/serial.log"
    t0=$(now)
    virt-install --connect "$uri" --name "$name" --virt-type qemu --machine pc \
        --memory 1024 --vcpus 2 --osinfo debian11 \
        --location "$iso" --initrd-inject "$preseed" \
        --extra-args "auto=true priority=critical console=ttyS0,115200n8" \
        --disk "path=$d/disk.qcow2,format=qcow2,size=4,bus=virtio" \
        --network user,model=virtio --graphics none --serial "file,path=$d/serial.log" \
        --noautoconsole --noreboot >"$d/tool.log" 2>&1 || { marker=FAIL; done_s=$(since "$t0"); cat "$d/tool.log" >&2; cleanup_domain "$name"; current_domain=''; return; }
    marker=''
    while :; do
        [ -n "$marker" ] || ! grep -aq KILN-PRESEED-READ "$d/serial.log" || marker=$(since "$t0")
        st=$(virsh domstate "$name" 2>/dev/null | head -n1 || echo gone)
        [ "$st" = running ] || break
        over "$t0" "$timeout_s" && break
        sleep 0.2
    done
    done_s=$(since "$t0")
    # virtlogd may write the last console lines after the domain is seen shut off.
    sleep 1
    [ -n "$marker" ] || ! grep -aq KILN-PRESEED-READ "$d/serial.log" || marker=$done_s
    [ -n "$marker" ] || marker=FAIL
    virsh dumpxml --inactive "$name" >"$d/domain.xml" 2>/dev/null || true
    cleanup_domain "$name"
    current_domain=''
}

run_packer() { # DIR
    local d=$1 t0 pid
    : >"$d/serial.log"
    rm -rf "$d/output"
    t0=$(now)
    PACKER_CACHE_DIR="$d/packer_cache" PACKER_LOG=1 PACKER_LOG_PATH="$d/packer-debug.log" CHECKPOINT_DISABLE=1 \
        setsid packer build -color=false -var "iso=$iso" -var "output=$d/output" -var "serial=$d/serial.log" \
        -var "name=kiln-bench-packer-$$-$round" "$here/packer.json" >"$d/tool.log" 2>&1 &
    pid=$!
    current_pid=$pid
    marker=''
    while kill -0 "$pid" 2>/dev/null; do
        [ -n "$marker" ] || ! grep -aq KILN-PRESEED-READ "$d/serial.log" || marker=$(since "$t0")
        if over "$t0" "$timeout_s"; then log "timeout after $timeout_s s"; stop_group "$pid"; fi
        sleep 0.2
    done
    wait "$pid" || log "packer exited with $? (see $d/tool.log)"
    done_s=$(since "$t0")
    [ -n "$marker" ] || ! grep -aq KILN-PRESEED-READ "$d/serial.log" || marker=$done_s
    [ -n "$marker" ] || marker=FAIL
    current_pid=''
    rm -rf "$d/output" "$d/packer_cache"
}

# kiln: the serial console is wherever kiln's domain puts it; the domains that appear while kiln
# runs are read for their <serial>/<console> file and <log file=>.
serial_files_of() { # DOMAIN
    virsh dumpxml "$1" 2>/dev/null | python3 -c '
import sys, xml.etree.ElementTree as ET
try:
    root = ET.fromstring(sys.stdin.read())
except ET.ParseError:
    sys.exit(0)
for tag in ("serial", "console"):
    for el in root.iter(tag):
        for child in el:
            p = child.get("path") or child.get("file")
            if p: print(p)
' || true
}
run_kiln() { # DIR
    local d=$1 t0 pid before dom files=() f
    before=$(virsh list --all --name 2>/dev/null | sort)
    rm -rf "$d/kiln-cache"
    mkdir -p "$d/kiln-cache"
    t0=$(now)
    (cd "$repo" && exec setsid "$KILN_BIN" build "$pipeline" --accel tcg --no-publish --cache-dir "$d/kiln-cache") >"$d/tool.log" 2>&1 &
    pid=$!
    current_pid=$pid
    marker=''
    while kill -0 "$pid" 2>/dev/null; do
        for dom in $(comm -13 <(echo "$before") <(virsh list --all --name 2>/dev/null | sort)); do
            while read -r f; do
                [ -n "$f" ] && [[ " ${files[*]} " != *" $f "* ]] && files+=("$f") && echo "$dom $f" >>"$d/kiln-serial-files"
            done < <(serial_files_of "$dom")
        done
        if [ -z "$marker" ]; then
            for f in "${files[@]}"; do
                grep -aq KILN-PRESEED-READ "$f" 2>/dev/null && { marker=$(since "$t0"); cp "$f" "$d/serial.log"; break; }
            done
        fi
        if over "$t0" "$timeout_s"; then log "timeout after $timeout_s s"; stop_group "$pid"; fi
        sleep 0.2
    done
    wait "$pid" || log "kiln exited with $? (see $d/tool.log)"
    done_s=$(since "$t0")
    [ -n "$marker" ] || marker=FAIL
    current_pid=''
}

declare -A results done_results
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
        log "round $round: $t ..."
        case $t in
            virt-install) run_virt_install "$d" ;;
            packer) run_packer "$d" ;;
            kiln) run_kiln "$d" ;;
        esac
        log "round $round: $t marker $marker s, done $done_s s ($d)"
        results[$t]="${results[$t]:-} $marker"
        done_results[$t]="${done_results[$t]:-} $done_s"
        printf '%s\t%s\t%s\t%s\n' "$round" "$t" "$marker" "$done_s" >>"$work/results.tsv"
    done
done

median() { tr ' ' '\n' | grep -v '^$' | grep -v FAIL | sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "FAIL"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
fastest=$(for t in "${tools[@]}"; do echo "${results[$t]}" | median; done | grep -v FAIL | sort -n | head -n1 || true)
echo
printf '%-13s %-10s %-10s %-7s %s\n' tool marker_s done_s ratio "per round (marker)"
for t in "${tools[@]}"; do
    m=$(echo "${results[$t]}" | median)
    dn=$(echo "${done_results[$t]}" | median)
    r=-
    [ "$m" = FAIL ] || [ -z "$fastest" ] || r=$(awk -v a="$m" -v b="$fastest" 'BEGIN { printf "%.2f", a / b }')
    printf '%-13s %-10s %-10s %-7s %s\n' "$t" "$m" "$dn" "$r" "${results[$t]# }"
done
