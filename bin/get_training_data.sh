#!/usr/bin/env bash
# Downloads the packages listed below, unpacks them into a temporary
# directory and writes the zoo training photographs selected by
# data/training_sources.tsv into OUT_DIR (default data/zoo_train).
#
#   bin/get_training_data.sh [OUT_DIR]
#
# Nothing is installed: .deb files are fetched with `apt-get download`
# through a private apt configuration (its own source list and package
# lists, in the temporary directory), so the system's apt sources stay as
# they are; the scikit-image wheel is fetched with `pip download`. Re-running
# skips images that are already written and correct. Needs root only if
# apt's partial-download directory demands it (it does not here).
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "$0")/.." && pwd)"
OUT_DIR="${1:-$ROOT_DIR/data/zoo_train}"
PYTHON="${PYTHON:-$ROOT_DIR/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# package=version@suite. The version is the one the sources list was checked
# against; if the suite no longer has it, the suite's current version is used
# and the preparer reports files that are gone.
PACKAGES=(
  "budgie-backgrounds=4.2-1@sid"
  "gnome-backgrounds=3.38.0-1@bullseye"
  "grub2-splashimages=1.1.1@sid"
  "lomiri-wallpapers-16.04=20.04.0-2@bookworm"
  "lomiri-wallpapers-20.04=20.04.0-2@bookworm"
  "mate-backgrounds=1.26.0-1@bookworm"
  "palapeli-data=4:22.12.3-1@bookworm"
  "plasma-workspace-wallpapers=4:5.27.5-2@bookworm"
  "scratch=1.4.0.6~dfsg1-6.1@bookworm"
  "tuxpaint-data=1:0.9.28-sdl2-1@bookworm"
  "ukui-wallpapers=20.04.4-1@sid"
)
SCIKIT_IMAGE_VERSION=0.22.0

die() { echo "get_training_data.sh: error: $*" >&2; exit 1; }
command -v apt-get >/dev/null || die "apt-get not found (Debian/Ubuntu only)"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/zoo_train.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
APT="$WORK/apt"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$WORK/debs" \
  "$WORK/root"
: > "$APT/sources.list"
for suite in bookworm bullseye trixie sid; do
  echo "deb $DEBIAN_MIRROR $suite main" >> "$APT/sources.list"
done
APT_OPTS=(-o "Dir::Etc::SourceList=$APT/sources.list"
          -o "Dir::Etc::SourceParts=/dev/null"
          -o "Dir::State::Lists=$APT/lists"
          -o "Dir::Cache=$APT/cache"
          -o "Dir::State::status=/dev/null"
          -o "APT::Sandbox::User=root"
          -o "Debug::NoLocking=1")

echo "== apt package lists (private configuration)"
apt-get "${APT_OPTS[@]}" -q update >"$WORK/apt-update.log" 2>&1 ||
  { tail -5 "$WORK/apt-update.log" >&2; die "apt-get update failed"; }

for entry in "${PACKAGES[@]}"; do
  spec="${entry%@*}"; suite="${entry##*@}"
  pkg="${spec%%=*}"; version="${spec#*=}"
  echo "== $pkg $version ($suite)"
  if ! (cd "$WORK/debs" && apt-get "${APT_OPTS[@]}" -q download \
        "$pkg=$version" >"$WORK/dl.log" 2>&1); then
    echo "   $version is gone; using $suite's current version" >&2
    (cd "$WORK/debs" && apt-get "${APT_OPTS[@]}" -q download \
      "$pkg/$suite" >"$WORK/dl.log" 2>&1) ||
      { tail -3 "$WORK/dl.log" >&2; die "cannot download $pkg"; }
  fi
  deb="$(ls "$WORK/debs/${pkg}_"*.deb | head -1)"
  mkdir -p "$WORK/root/$pkg"
  dpkg-deb -x "$deb" "$WORK/root/$pkg"
  dpkg-deb -f "$deb" Version > "$WORK/root/$pkg/.version"
  rm -f "$deb"
done

echo "== scikit-image $SCIKIT_IMAGE_VERSION (PyPI wheel)"
"$PYTHON" -m pip download -q --no-deps -d "$WORK/wheel" \
  "scikit-image==$SCIKIT_IMAGE_VERSION" ||
  die "pip download scikit-image failed"
mkdir -p "$WORK/root/scikit-image"
"$PYTHON" - "$WORK/wheel" "$WORK/root/scikit-image" <<'EOF'
import glob, sys, zipfile
wheel = sorted(glob.glob(sys.argv[1] + "/scikit_image-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
  z.extractall(sys.argv[2], [n for n in z.namelist()
                             if n.startswith("skimage/data/")])
EOF
echo "$SCIKIT_IMAGE_VERSION" > "$WORK/root/scikit-image/.version"

echo "== writing images to $OUT_DIR"
"$PYTHON" "$ROOT_DIR/bin/prepare_training_data.py" \
  --sources "$ROOT_DIR/data/training_sources.tsv" --root "$WORK/root" \
  --out "$OUT_DIR" --heldout_dir "$ROOT_DIR/data/test"
