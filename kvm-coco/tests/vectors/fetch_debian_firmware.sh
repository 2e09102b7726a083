#!/bin/sh
# Fetches the OVMF / TDVF firmware images Debian ships, at the pinned package versions the
# committed vectors (debian-firmware.json) were made from, into target/debian-firmware/ (or
# DEST), and checks every image's SHA-256. The packages are downloaded with apt-get from the
# Debian archive the system's apt already uses (apt's lists and cache for the three suites
# are kept under DEST/apt; nothing is installed), and unpacked with dpkg-deb.
#
# usage: kvm-coco/tests/vectors/fetch_debian_firmware.sh [DEST]   (DEST relative to the workspace root)
#
# Needs apt-get, dpkg-deb, sha256sum and the Debian archive keys (debian-archive-keyring).
# DEBIAN_ARCHIVE_URI overrides the archive URI taken from the system's apt sources.
set -eu

cd "$(dirname "$0")/../../.."
dest=${1:-target/debian-firmware}

# suite package version path-in-package image-name sha256
PINS='
bookworm ovmf 2022.11-6+deb12u2 usr/share/ovmf/OVMF.fd bookworm_ovmf_OVMF.fd 7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773
bookworm ovmf 2022.11-6+deb12u2 usr/share/OVMF/OVMF_CODE.fd bookworm_ovmf_OVMF_CODE.fd d9b568def24088c92f34b5479e0ed7e44d0a4d4cea8a0f5716719180bba48106
bookworm ovmf 2022.11-6+deb12u2 usr/share/OVMF/OVMF_CODE.secboot.fd bookworm_ovmf_OVMF_CODE.secboot.fd 6ee6a5db7a1443d17594f1e00e3cf2a2250bc1c95c8f9101bc49c9977ce11a68
bookworm ovmf 2022.11-6+deb12u2 usr/share/OVMF/OVMF_CODE_4M.fd bookworm_ovmf_OVMF_CODE_4M.fd b157d97b1f69729514feb7f201d2cbe4957f23ab77920e361fe9f822ba49ca4c
bookworm ovmf 2022.11-6+deb12u2 usr/share/OVMF/OVMF_CODE_4M.secboot.fd bookworm_ovmf_OVMF_CODE_4M.secboot.fd d50189a486d22af418198226a3a5bcb6ddac775590f6a808bd629474ee034d62
trixie ovmf 2025.02-8+deb13u1 usr/share/ovmf/OVMF.fd trixie_ovmf_OVMF.fd 14954040cc754ade0c625ac3470ea46d4c14318b5b1396de4ef77090203d76db
trixie ovmf 2025.02-8+deb13u1 usr/share/OVMF/OVMF_CODE_4M.fd trixie_ovmf_OVMF_CODE_4M.fd 624e06de18b4fa535e90db7160d00d3d07d206422b89999bf1e27d920264e4e0
trixie ovmf 2025.02-8+deb13u1 usr/share/OVMF/OVMF_CODE_4M.secboot.fd trixie_ovmf_OVMF_CODE_4M.secboot.fd 1a46295574430cfb7f825ee3e4dc64b052acbef08e310377ed7c64cb757a9dc1
trixie ovmf 2025.02-8+deb13u1 usr/share/OVMF/OVMF_CODE_4M.secboot.strictnx.fd trixie_ovmf_OVMF_CODE_4M.secboot.strictnx.fd 9ee9f2382e0c6aa95c87fed4131f9c1080a084d8ef7bff3d8b89147bf2a34b1b
sid ovmf-generic 2026.08+ds-2 usr/share/ovmf/OVMF.fd sid_ovmf-generic_OVMF.fd 6a3e8f438ad7269f5dfd884647587b88391fb23965bb3aa7902b519438dba129
sid ovmf-generic 2026.08+ds-2 usr/share/OVMF/OVMF_CODE_4M.fd sid_ovmf-generic_OVMF_CODE_4M.fd 7e34e3b83224968bb0714c0ebc88f75c5c37b4cc892c902e511ccc7a7c107f94
sid ovmf-generic 2026.08+ds-2 usr/share/OVMF/OVMF_CODE_4M.secboot.fd sid_ovmf-generic_OVMF_CODE_4M.secboot.fd b3cdbd705066cdf2bb0c0b40b77c341dc2a19e0db56c9af0a54fa1737ff3ee5b
sid ovmf-generic 2026.08+ds-2 usr/share/OVMF/OVMF_CODE_4M.secboot.strictnx.fd sid_ovmf-generic_OVMF_CODE_4M.secboot.strictnx.fd 6038b93ae5f86a57cae845e85b2c0382a778406a6e1547b09be1488feca58413
sid ovmf-amdsev 2026.08+ds-2 usr/share/ovmf/OVMF.amdsev.fd sid_ovmf-amdsev_OVMF.amdsev.fd 3e4fd0b3fe3b2dbe481c3d9e99418a034174f26cbe1f55aa212b0f18c12d2d6f
sid ovmf-inteltdx 2026.08+ds-2 usr/share/ovmf/OVMF.inteltdx.ms.fd sid_ovmf-inteltdx_OVMF.inteltdx.ms.fd a265075b4147a096109e501e76196df1ec8a18659c26f7401492c597ec88f312
'

uri=${DEBIAN_ARCHIVE_URI:-$(apt-get indextargets --format '$(LABEL)|$(REPO_URI)' 'Identifier: Packages' |
    awk -F'|' '$1 == "Debian" { print $2; exit }')}
if [ -z "$uri" ]; then
    echo "no Debian archive in the system's apt sources; set DEBIAN_ARCHIVE_URI" >&2
    exit 1
fi

mkdir -p "$dest/debs" "$dest/apt/empty"
dest=$(cd "$dest" && pwd)
: > "$dest/apt/status"

# apt with the system's configuration (archive access, signature checks) but a private
# sources list, package lists and cache per suite: nothing is installed and the system's apt
# state is not touched.
apt_in() {
    suite=$1
    shift
    apt-get -q -o Dir::Etc::sourcelist="$dest/apt/$suite.list" \
        -o Dir::Etc::sourceparts="$dest/apt/empty" \
        -o Dir::State::lists="$dest/apt/$suite/lists" \
        -o Dir::State::status="$dest/apt/status" \
        -o Dir::Cache="$dest/apt/$suite/cache" \
        -o APT::Sandbox::User=root "$@"
}

updated=""
# Read from a here-document, not a pipe, so that `exit` leaves the script.
while read -r suite pkg ver path name sum; do
    [ -n "$suite" ] || continue
    deb="$dest/debs/${pkg}_${ver}_all.deb"
    if [ ! -f "$deb" ]; then
        case " $updated " in
        *" $suite "*) ;;
        *)
            mkdir -p "$dest/apt/$suite/lists/partial" "$dest/apt/$suite/cache/archives/partial"
            echo "deb [target=Packages] $uri $suite main" > "$dest/apt/$suite.list"
            if ! apt_in "$suite" update >/dev/null; then
                echo "apt-get update of Debian $suite failed" >&2
                exit 1
            fi
            updated="$updated $suite"
            ;;
        esac
        if ! (cd "$dest/debs" && apt_in "$suite" download "$pkg=$ver" >/dev/null); then
            echo "Debian $suite has no $pkg $ver (any more): update the pins and regenerate the vectors" >&2
            exit 1
        fi
    fi
    root="$dest/root/${pkg}_$ver"
    if [ ! -d "$root" ]; then
        rm -rf "$root.tmp"
        mkdir -p "$root.tmp"
        dpkg-deb -x "$deb" "$root.tmp"
        mv "$root.tmp" "$root"
    fi
    got=$(sha256sum "$root/$path" | cut -d' ' -f1)
    if [ "$got" != "$sum" ]; then
        echo "$suite $pkg $ver $path: sha256 $got, expected $sum" >&2
        exit 1
    fi
    cp "$root/$path" "$dest/$name"
    echo "$name  $pkg $ver ($suite)  sha256 $sum"
done <<EOF
$PINS
EOF
