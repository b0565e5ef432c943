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
# they are; the scikit-image and scikit-learn wheels are fetched with
# `pip download` and only their image folders are unpacked. Re-running
# skips images that are already written and correct. Needs root only if
# apt's partial-download directory demands it (it does not here).
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "$0")/.." && pwd)"
OUT_DIR="${1:-$ROOT_DIR/data/zoo_train}"
PYTHON="${PYTHON:-$ROOT_DIR/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# package=version@suite[/dir]. The version is the one the sources list was
# checked against; if the suite no longer has it, the suite's current version
# is used and the preparer reports files that are gone. `dir` (default: the
# package name) is the directory under the unpacked root and the prefix of
# the output names; it tells two versions of one package apart.
PACKAGES=(
  "budgie-backgrounds=4.2-1@sid"
  "gcompris-qt-data=25.0.12-1@trixie"
  "gnome-backgrounds=3.38.0-1@bullseye"
  "grub2-splashimages=1.1.1@sid"
  "grub2-splashimages=1.0.2@trixie/grub2-splashimages-1.0"
  "jigzo-data=0.6.1-7.1@bookworm"
  "lomiri-wallpapers-16.04=20.04.0-2@bookworm"
  "lomiri-wallpapers-20.04=20.04.0-2@bookworm"
  "mate-backgrounds=1.26.0-1@bookworm"
  "palapeli-data=4:22.12.3-1@bookworm"
  "plasma-workspace-wallpapers=4:5.27.5-2@bookworm"
  "plasma-workspace-wallpapers=4:6.3.4-1@trixie/plasma-workspace-wallpapers-6"
  "scratch=1.4.0.6~dfsg1-6.1@bookworm"
  "tuxpaint-data=1:0.9.28-sdl2-1@bookworm"
  "ukui-wallpapers=20.04.4-1@sid"
)
# distribution==version:folder inside the wheel. The distribution name is
# also the directory under the unpacked root.
WHEELS=(
  "scikit-image==0.22.0:skimage/data/"
  "scikit-learn==1.9.1:sklearn/datasets/images/"
)

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
  spec="${entry%@*}"; target="${entry##*@}"
  suite="${target%%/*}"; dir="${target#"$suite"}"; dir="${dir#/}"
  pkg="${spec%%=*}"; version="${spec#*=}"; dir="${dir:-$pkg}"
  echo "== $pkg $version ($suite) -> $dir"
  if ! (cd "$WORK/debs" && apt-get "${APT_OPTS[@]}" -q download \
        "$pkg=$version" >"$WORK/dl.log" 2>&1); then
    echo "   $version is gone; using $suite's current version" >&2
    (cd "$WORK/debs" && apt-get "${APT_OPTS[@]}" -q download \
      "$pkg/$suite" >"$WORK/dl.log" 2>&1) ||
      { tail -3 "$WORK/dl.log" >&2; die "cannot download $pkg"; }
  fi
  deb="$(ls "$WORK/debs/${pkg}_"*.deb | head -1)"
  mkdir -p "$WORK/root/$dir"
  dpkg-deb -x "$deb" "$WORK/root/$dir"
  dpkg-deb -f "$deb" Version > "$WORK/root/$dir/.version"
  rm -f "$deb"
done

for entry in "${WHEELS[@]}"; do
  req="${entry%%:*}"; folder="${entry#*:}"
  dist="${req%%==*}"; version="${req#*==}"
  echo "== $dist $version (PyPI wheel)"
  rm -rf "$WORK/wheel"
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: \
    -d "$WORK/wheel" "$req" || die "pip download $req failed"
  mkdir -p "$WORK/root/$dist"
  "$PYTHON" - "$WORK/wheel" "$WORK/root/$dist" "$folder" <<'EOF'
import glob, sys, zipfile
wheel = sorted(glob.glob(sys.argv[1] + "/*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
  z.extractall(sys.argv[2], [n for n in z.namelist()
                             if n.startswith(sys.argv[3])])
EOF
  echo "$version" > "$WORK/root/$dist/.version"
done

echo "== writing images to $OUT_DIR"
"$PYTHON" "$ROOT_DIR/bin/prepare_training_data.py" \
  --sources "$ROOT_DIR/data/training_sources.tsv" --root "$WORK/root" \
  --out "$OUT_DIR" --heldout_dir "$ROOT_DIR/data/test"
