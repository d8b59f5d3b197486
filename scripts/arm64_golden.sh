#!/usr/bin/env bash
# scripts/arm64_golden.sh — prove that the l3ic runtime works on ARM64 (a stand-in for a Jetson).
#
# On an x86-64 Debian host, this builds (or reuses) a Debian arm64 root filesystem, runs it under
# qemu-user through binfmt_misc, and inside it, from a copy of the current working tree:
#   * creates a venv and runs `pip install . pytest`, which compiles the FSE cffi extension from
#     source for aarch64 (build_fse.py fetches the pinned zstandard sdist, or uses L3IC_FSE_SOURCE);
#   * prints `uname -m` and the Python, numpy and ONNX Runtime versions;
#   * runs tests/test_golden.py (symbols bit-identical to the x86 golden files, decoded pixels
#     within one rounding step) and a CLI round trip (encode --verify, decode of a golden file).
# It exits non-zero if any step fails and ends with a summary (arch, versions, tests, timings).
#
# Usage (as root, Debian host):  scripts/arm64_golden.sh
# Environment:
#   L3IC_ARM64_ROOTFS  where the arm64 rootfs lives (default /var/tmp/l3ic-arm64; never in the repo)
#   L3IC_ARM64_SUITE   Debian suite (default bookworm)
#   L3IC_ARM64_MIRROR  Debian mirror (default: debootstrap's own default)
#   L3IC_ARM64_NICE    niceness of the emulated steps (default 5: other jobs keep most of the CPU)
#   L3IC_FSE_SOURCE    passed through to the build (copied into the rootfs): the zstandard sdist
#                      or an unpacked zstd tree, see build_fse.py. Without it the guest downloads
#                      the pinned sdist from PyPI itself, as a board would.
# Idempotent: a finished rootfs (marked by .l3ic-rootfs-ok) and the guest venv are reused; the
# repository copy is replaced on every run, and l3ic is reinstalled from it.
set -euo pipefail

ROOTFS=${L3IC_ARM64_ROOTFS:-/var/tmp/l3ic-arm64}
SUITE=${L3IC_ARM64_SUITE:-bookworm}
MIRROR=${L3IC_ARM64_MIRROR:-}   # empty: debootstrap picks its default mirror
NICE=(nice -n "${L3IC_ARM64_NICE:-5}")
# Packages the guest needs: python3-dev + build-essential to compile the cffi extension,
# python3-venv for ensurepip, ca-certificates for HTTPS to PyPI.
GUEST_PACKAGES=python3,python3-venv,python3-dev,build-essential,ca-certificates
GUEST_REPO=/opt/l3ic          # the copy of the working tree, inside the rootfs
GUEST_VENV=/opt/l3ic-venv     # kept between runs (outside the copy, which is replaced)
GUEST_FSE=/opt/l3ic-fse-source
# Everything in the chroot runs under this clean environment (env -i), so the host's settings
# (pip find-links and mirrors, the host venv on PATH) do not leak in.
GUEST_ENV=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TMPDIR=/tmp)

REPO=$(git -C "$(dirname "${BASH_SOURCE[0]}")/.." rev-parse --show-toplevel)

log() { printf '\n[arm64_golden %(%H:%M:%S)T] %s\n' -1 "$*"; }
die() { printf '[arm64_golden] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (apt-get, debootstrap, chroot and mounts need it)"
[[ $(uname -m) == x86_64 || $(uname -m) == aarch64 ]] || die "unexpected host architecture $(uname -m)"
ROOTFS=$(realpath -m "$ROOTFS")
case "$ROOTFS/" in "$REPO"/*) die "L3IC_ARM64_ROOTFS ($ROOTFS) must not be inside the repository" ;; esac
[[ $ROOTFS != / ]] || die "L3IC_ARM64_ROOTFS must not be /"
MARKER=$ROOTFS/.l3ic-rootfs-ok

# ---------------------------------------------------------------- timings, summary, cleanup
declare -a TIMINGS=()
declare -A INFO=()
CURRENT_STAGE=""
stage() {   # stage NAME COMMAND...: runs one step, records its wall time
    local name=$1 t0=$SECONDS
    shift
    CURRENT_STAGE=$name
    log "== $name"
    "$@"
    TIMINGS+=("$(printf '  %-26s %6ds' "$name" $((SECONDS - t0)))")
    CURRENT_STAGE=""
}

MOUNTED=()   # guest mounts made by this script, unmounted in reverse order on exit
unmount_guest() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" || true
    done
    MOUNTED=()
}

START=$SECONDS
summary() {
    local rc=$?
    unmount_guest
    echo
    echo "================ arm64 golden summary ================"
    printf '  host            %s (%s)\n' "$(uname -m)" "$(uname -r)"
    printf '  rootfs          %s (%s)\n' "$ROOTFS" "$SUITE"
    printf '  guest uname -m  %s\n' "${INFO[arch]:-?}"
    printf '  python          %s\n' "${INFO[python]:-?}"
    printf '  numpy           %s\n' "${INFO[numpy]:-?}"
    printf '  onnxruntime     %s\n' "${INFO[onnxruntime]:-?}"
    printf '  FSE extension   %s\n' "${INFO[fse]:-?}"
    printf '  golden tests    %s\n' "${INFO[pytest]:-not run}"
    printf '  CLI round trip  %s\n' "${INFO[cli]:-not run}"
    echo "  timings:"
    printf '%s\n' "${TIMINGS[@]}"
    printf '  %-26s %6ds\n' total $((SECONDS - START))
    if ((rc == 0)); then
        echo "  RESULT: PASS"
    else
        echo "  RESULT: FAIL (exit $rc${CURRENT_STAGE:+, in stage \"$CURRENT_STAGE\"})"
    fi
    echo "======================================================"
}
trap summary EXIT

# ---------------------------------------------------------------- 1. host tools and binfmt
BINFMT=/proc/sys/fs/binfmt_misc
# The arm64 ELF header pattern qemu registers; the kernel decodes the \x escapes itself.
AARCH64_MAGIC='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
AARCH64_MASK='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'

binfmt_ok() {   # enabled, and with the F flag: the kernel opens the interpreter at registration,
                # so it need not exist inside the chroot
    [[ -r $BINFMT/qemu-aarch64 ]] &&
        head -n1 "$BINFMT/qemu-aarch64" | grep -qx enabled &&
        grep -q '^flags:.*F' "$BINFMT/qemu-aarch64"
}

host_tools() {
    local need=()
    if [[ $(uname -m) == x86_64 ]]; then
        command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
        command -v update-binfmts >/dev/null || need+=(binfmt-support)
    fi
    command -v debootstrap >/dev/null || need+=(debootstrap)
    if ((${#need[@]})); then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
    fi
    [[ $(uname -m) == x86_64 ]] || return 0   # already on arm64: nothing to emulate

    [[ -e $BINFMT/register ]] || mount -t binfmt_misc binfmt_misc "$BINFMT"
    # qemu-user-static's postinst registers the handler through binfmt-support, but without
    # systemd (containers, microVMs) that may not have happened: enable it, else register it by hand.
    binfmt_ok || update-binfmts --enable qemu-aarch64 || true
    if ! binfmt_ok; then
        local qemu
        qemu=$(command -v qemu-aarch64-static) || die "qemu-aarch64-static not found"
        if [[ -e $BINFMT/qemu-aarch64 ]]; then
            echo -1 >"$BINFMT/qemu-aarch64"   # remove a handler without F, to replace it
        fi
        printf ':qemu-aarch64:M::%s:%s:%s:F' "$AARCH64_MAGIC" "$AARCH64_MASK" "$qemu" >"$BINFMT/register"
    fi
    binfmt_ok || die "could not register an enabled qemu-aarch64 binfmt handler with the F flag"
    sed 's/^/  binfmt: /' "$BINFMT/qemu-aarch64"
}

# ---------------------------------------------------------------- 2. arm64 rootfs
mounts_under() {   # mount points at or below $1, deepest first
    findmnt -rn -o TARGET | awk -v p="$1/" 'index($0 "/", p) == 1' | sort -r
}
# Unmount anything left mounted under a path (e.g. by an interrupted debootstrap), so that a
# later rm -rf cannot reach into /proc or /sys.
unmount_under() {
    local m
    for m in $(mounts_under "$1"); do   # deepest first
        umount "$m" 2>/dev/null || umount -l "$m"
    done
    if [[ -n $(mounts_under "$1") ]]; then
        die "$1 still has mounts under it; not touching it"
    fi
}

guest_packages_present() {
    local status
    status=$(chroot "$ROOTFS" dpkg-query -W -f='${Status}\n' ${GUEST_PACKAGES//,/ } 2>/dev/null) || return 1
    ! grep -qv 'install ok installed' <<<"$status"
}

# Built in $ROOTFS.partial and renamed when finished, so an interrupted bootstrap is never
# mistaken for a usable rootfs.
rootfs_first_stage() {
    local partial=$ROOTFS.partial
    unmount_under "$partial"
    rm -rf --one-file-system "$partial"
    mkdir -p "$(dirname "$ROOTFS")"
    # --foreign: unpack only (host-side, fast); the second stage runs the arm64 maintainer
    # scripts under qemu and is the slow part.
    # The .debs are cached next to the rootfs, so a retry after a failure does not download again.
    mkdir -p "$ROOTFS.debs"
    debootstrap --arch=arm64 --foreign --variant=minbase --include="$GUEST_PACKAGES" \
        --cache-dir="$ROOTFS.debs" "$SUITE" "$partial" ${MIRROR:+"$MIRROR"}
}

rootfs_second_stage() {
    local partial=$ROOTFS.partial
    "${NICE[@]}" env -i "${GUEST_ENV[@]}" chroot "$partial" /debootstrap/debootstrap --second-stage
    unmount_under "$partial"   # debootstrap mounts /proc and /sys itself
    printf 'suite=%s packages=%s\n' "$SUITE" "$GUEST_PACKAGES" >"$partial/.l3ic-rootfs-ok"
    mv -T "$partial" "$ROOTFS"
}

# ---------------------------------------------------------------- guest environment
mount_guest() {
    unmount_under "$ROOTFS"
    # /proc for Python and pip, and a private /dev/shm. debootstrap made the /dev nodes (null,
    # zero, urandom...), so the host's /dev is not bind-mounted.
    # /sys is deliberately NOT mounted: under qemu-user, /proc/cpuinfo is the x86 host's, and
    # with /sys present ONNX Runtime's cpuinfo goes on to parse it as ARM and segfaults at
    # `import onnxruntime` (seen with 1.32.0, qemu 7.2). Without /sys, cpuinfo_initialize fails
    # cleanly and ORT only warns. A real arm64 board has a consistent /proc and /sys.
    mount -t proc proc "$ROOTFS/proc"
    MOUNTED+=("$ROOTFS/proc")
    mkdir -p "$ROOTFS/dev/shm"
    mount -t tmpfs -o size=256m,mode=1777 tmpfs "$ROOTFS/dev/shm"
    MOUNTED+=("$ROOTFS/dev/shm")
    [[ -c $ROOTFS/dev/null && -c $ROOTFS/dev/urandom ]] || die "$ROOTFS/dev lacks device nodes"
    cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"   # name resolution for pip
}

# Hosts behind a TLS-inspecting proxy trust extra CAs (/usr/local/share/ca-certificates);
# the guest must trust the same ones to reach PyPI. Its bundle is then rebuilt, and pip
# (whose own certifi bundle would not have them) is pointed at it through PIP_CERT.
trust_host_cas() {
    local dir=/usr/local/share/ca-certificates
    rm -rf --one-file-system "$ROOTFS$dir"
    mkdir -p "$ROOTFS$dir"
    if compgen -G "$dir/*" >/dev/null; then
        cp -a "$dir"/. "$ROOTFS$dir"/
    fi
    guest "update-ca-certificates >/dev/null"
    echo "  guest trusts $(grep -c 'BEGIN CERTIFICATE' "$ROOTFS/etc/ssl/certs/ca-certificates.crt") CAs" \
         "($(find "$ROOTFS$dir" -name '*.crt' | wc -l) local ones from the host)"
}

# guest SCRIPT: runs a bash script in the chroot (clean environment: the guest reaches PyPI
# like a fresh board would).
guest() {
    local env=("${GUEST_ENV[@]}" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 PIP_NO_INPUT=1
               PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
    if [[ -n ${L3IC_FSE_SOURCE:-} ]]; then
        env+=("L3IC_FSE_SOURCE=$GUEST_FSE/$(basename "$L3IC_FSE_SOURCE")")
    fi
    "${NICE[@]}" env -i "${env[@]}" chroot "$ROOTFS" /bin/bash -euo pipefail -c "$1"
}

# ---------------------------------------------------------------- 3. copy of the working tree
copy_tree() {
    rm -rf --one-file-system "$ROOTFS$GUEST_REPO"
    mkdir -p "$ROOTFS$GUEST_REPO"
    # Tracked and untracked-but-not-ignored files (what `git status` would commit), skipping
    # tracked files deleted in the working tree. Ignored build outputs (the x86 _fse*.so,
    # build/, *.egg-info) stay behind: the guest must build its own.
    (cd "$REPO" && git ls-files -z -co --exclude-standard |
        while IFS= read -r -d '' f; do [[ -e $f || -L $f ]] && printf '%s\0' "$f"; done |
        tar --null -T - -cf -) | tar -xf - -C "$ROOTFS$GUEST_REPO"
    echo "  $(find "$ROOTFS$GUEST_REPO" -type f | wc -l) files, $(du -sh "$ROOTFS$GUEST_REPO" | cut -f1) copied to $GUEST_REPO"

    rm -rf --one-file-system "$ROOTFS$GUEST_FSE"
    if [[ -n ${L3IC_FSE_SOURCE:-} ]]; then
        local src
        src=$(realpath -e "$L3IC_FSE_SOURCE") || die "L3IC_FSE_SOURCE=$L3IC_FSE_SOURCE does not exist"
        mkdir -p "$ROOTFS$GUEST_FSE"
        cp -a "$src" "$ROOTFS$GUEST_FSE/$(basename "$L3IC_FSE_SOURCE")"
        echo "  L3IC_FSE_SOURCE copied to $GUEST_FSE/$(basename "$L3IC_FSE_SOURCE")"
    fi
}

# ---------------------------------------------------------------- 4. guest steps
guest_install() {
    guest "
        [ -x $GUEST_VENV/bin/python ] || python3 -m venv $GUEST_VENV
        . $GUEST_VENV/bin/activate
        cd $GUEST_REPO
        # A local project is always rebuilt and reinstalled, so the extension is compiled from
        # this copy on every run; dependencies already in the venv are kept.
        pip install --progress-bar off . pytest
    "
}

guest_versions() {
    local out
    # -P: do not put the working directory on sys.path, so 'l3ic' is the installed
    # package (with its compiled extension), not the source folder of the copy.
    out=$(guest "
        . $GUEST_VENV/bin/activate
        cd $GUEST_REPO
        echo arch=\$(uname -m)
        python -P - <<'EOF'
import platform, numpy, onnxruntime, l3ic, l3ic._fse as fse
with open(fse.__file__, 'rb') as f:
    head = f.read(20)
machine = {183: 'aarch64', 62: 'x86-64'}.get(int.from_bytes(head[18:20], 'little'), 'other')
print('python=' + platform.python_version())
print('numpy=' + numpy.__version__)
print('onnxruntime=%s (%s)' % (onnxruntime.__version__, ', '.join(onnxruntime.get_available_providers())))
print('fse=%s, ELF %s' % (fse.__file__, machine))
print('l3ic=' + l3ic.__file__)
EOF
    " 2>&1) || { echo "$out"; return 1; }
    echo "$out" | sed 's/^/  /'
    local key value
    while IFS='=' read -r key value; do INFO[$key]=$value; done <<<"$out"
    [[ ${INFO[arch]} == aarch64 ]] || die "guest uname -m is ${INFO[arch]}, not aarch64"
    [[ ${INFO[fse]} == *"ELF aarch64" ]] || die "the FSE extension is not an aarch64 binary: ${INFO[fse]}"
    [[ ${INFO[l3ic]} == $GUEST_VENV/* ]] || die "l3ic imported from ${INFO[l3ic]}, not the venv"
}

guest_golden_tests() {
    local log=$ROOTFS/tmp/l3ic-pytest.log rc=0
    # Run from the copy's root (conftest.py puts tests/ on sys.path for `golden.make_golden`);
    # -P as above, so the tests import the installed runtime.
    guest "
        . $GUEST_VENV/bin/activate
        cd $GUEST_REPO
        python -P -m pytest -q -p no:cacheprovider tests/test_golden.py
    " 2>&1 | tee "$log" || rc=$?
    INFO[pytest]=$(grep -E '^=*\s*[0-9]+ (passed|failed|error)|(passed|failed|error).* in [0-9.]+s' "$log" | tail -n1 | sed 's/^=* *//; s/ *=*$//')
    INFO[pytest]=${INFO[pytest]:-"no summary line (exit $rc)"}
    return "$rc"
}

guest_cli_round_trip() {
    local out
    out=$(guest "
        . $GUEST_VENV/bin/activate
        cd $GUEST_REPO
        python -P -m runtime.encode samples/rose.png -o /tmp/rose.l3ic -f --verify
        python -P -m runtime.decode tests/golden/rgb.l3ic -o /tmp/rgb.png -f
        # The CLI's decode of the golden file must also match the x86 decode within one step.
        python -P - <<'EOF'
import numpy as np
from PIL import Image
ours = np.asarray(Image.open('/tmp/rgb.png')).astype(np.int16)
golden = np.asarray(Image.open('tests/golden/rgb.decoded.png')).astype(np.int16)
assert ours.shape == golden.shape, (ours.shape, golden.shape)
diff = int(np.abs(ours - golden).max())
print('decode of tests/golden/rgb.l3ic vs rgb.decoded.png: max abs diff %d' % diff)
assert diff <= 1, 'CLI decode differs from the golden decode by %d' % diff
EOF
    " 2>&1) || { echo "$out"; return 1; }
    echo "$out" | sed 's/^/  /'
    INFO[cli]="ok: $(echo "$out" | grep -o 'PSNR [0-9.]* dB' | head -n1) encode --verify, $(echo "$out" | grep -o 'max abs diff [0-9]*') on golden decode"
}

# ---------------------------------------------------------------- run
log "repository $REPO -> rootfs $ROOTFS ($SUITE arm64)"
stage "host tools + binfmt" host_tools
if [[ -f $MARKER ]]; then
    log "reusing the rootfs at $ROOTFS ($(cat "$MARKER"))"
else
    [[ ! -e $ROOTFS ]] || die "$ROOTFS exists but is not a finished rootfs ($MARKER missing): remove it or set L3IC_ARM64_ROOTFS"
    stage "debootstrap first stage" rootfs_first_stage
    stage "debootstrap second stage" rootfs_second_stage
fi
guest_packages_present || die "the rootfs at $ROOTFS lacks some of $GUEST_PACKAGES"
stage "copy working tree" copy_tree
mount_guest
stage "guest CA certificates" trust_host_cas
stage "pip install . pytest" guest_install
stage "versions" guest_versions
stage "pytest test_golden.py" guest_golden_tests
stage "CLI round trip" guest_cli_round_trip
