#!/bin/sh
# Build build/deb/nbedge_<version>_<arch>.deb from this checkout (make deb; docs/installer.md).
#
# The application goes into its own virtual environment at /opt/nbedge: the wheel of this
# checkout and the gateway's runtime dependencies only (no central, train or dev extras), at the
# versions the checkout's .venv was tested with. A virtual environment only works at the path it
# was made at (its scripts name their interpreter), so it is made at /opt/nbedge itself, inside a
# private mount namespace where an overlay over /opt sends every write to the staging folder:
# the machine's own /opt is never touched, and what is already in it stays visible. That needs
# root (CI and a build box are root; elsewhere: sudo make deb).
#
# DEB_VERSION overrides the package's version (default: nbedge --version); DEB_OUT the folder
# it is written to (default build/deb).
set -eu

cd "$(dirname "$0")/.."
venv=$(realpath "${VENV:-.venv}")
out=${DEB_OUT:-build/deb}
stage=$out/stage
root=$stage/root

version=${DEB_VERSION:-$("$venv/bin/nbedge" --version | sed 's/^nbedge //')}
arch=$(dpkg --print-architecture)
# The venv's interpreter is this exact minor version: its site-packages is lib/python3.X.
python_version=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
python=/usr/bin/python$python_version
[ -x "$python" ] || { echo "nbedge: $python is missing (Debian's python$python_version)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "nbedge: make deb needs root for its mount namespace (sudo make deb)" >&2; exit 1; }
[ -d /opt ] || { echo "nbedge: make deb needs an /opt folder to mount the staging folder over" >&2; exit 1; }

rm -rf "$stage"
mkdir -p "$root/opt" "$stage/wheel" "$stage/overlay"

echo "nbedge: building the wheel of this checkout"
# setuptools builds in build/lib and would package a module deleted since the last build.
rm -rf build/lib build/bdist.*
"$venv/bin/pip" wheel --quiet --no-deps --no-build-isolation --wheel-dir "$stage/wheel" . \
    >"$stage/wheel.log" 2>&1 || { cat "$stage/wheel.log" >&2; exit 1; }
wheel=$(ls "$stage"/wheel/nbedge-*.whl)
# The versions the tests ran against (constraints only apply to what the wheel requires).
"$venv/bin/pip" freeze --exclude-editable | grep -v ' @ ' >"$stage/constraints.txt"

echo "nbedge: installing it into /opt/nbedge (private mount namespace)"
unshare --mount --propagation private sh -eu -c '
    mount -t overlay overlay -o "lowerdir=/opt,upperdir=$1/opt,workdir=$6" /opt
    "$2" -m venv --without-pip /opt/nbedge
    "$3" --python /opt/nbedge/bin/python install --quiet --disable-pip-version-check \
        --no-warn-script-location --constraint "$4" "$5"
' build-deb "$(realpath "$root")" "$python" "$venv/bin/pip" \
    "$(realpath "$stage/constraints.txt")" "$(realpath "$wheel")" "$(realpath "$stage/overlay")"
[ "$(head -n 1 "$root/opt/nbedge/bin/nbedge")" = "#!/opt/nbedge/bin/python$python_version" ] \
    || [ "$(head -n 1 "$root/opt/nbedge/bin/nbedge")" = "#!/opt/nbedge/bin/python" ] \
    || { echo "nbedge: the venv's scripts do not name /opt/nbedge/bin/python" >&2; exit 1; }

mkdir -p "$root/usr/bin"
ln -s /opt/nbedge/bin/nbedge "$root/usr/bin/nbedge"
install -D -m 0644 systemd/nbedge-gateway.service "$root/lib/systemd/system/nbedge-gateway.service"
install -D -m 0644 packaging/deb/journald.conf "$root/usr/lib/systemd/journald.conf.d/nbedge.conf"
install -D -m 0640 examples/gateway.toml "$root/etc/nbedge/gateway.toml"
doc=$root/usr/share/doc/nbedge
install -D -m 0644 README.md "$doc/README.md"
install -D -m 0644 packaging/deb/copyright "$doc/copyright"
install -d "$doc/docs" "$doc/examples/mosquitto"
install -m 0644 docs/*.md "$doc/docs/"
install -m 0644 examples/gateway.toml "$doc/examples/"
install -m 0644 examples/mosquitto/* "$doc/examples/mosquitto/"

# Depends: the Debian packages of the system libraries the venv's compiled modules load (the
# wheels bundle the rest in their own *.libs folders).
shlibs=$(find "$root/opt/nbedge" -name '*.so*' -type f -exec ldd {} + 2>/dev/null \
    | sed -n 's/^[[:space:]]*[^ ]* => \(\/[^ ]*\) (0x.*/\1/p' | grep -v "^$(realpath "$root")/" | sort -u \
    | while read -r lib; do
        dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null \
            || dpkg -S "/usr$lib" 2>/dev/null || { echo "nbedge: no package has $lib" >&2; exit 1; }
    done | sed 's/:.*//' | sort -u | grep -v "^libpython" | paste -sd, - | sed 's/,/, /g')

install -d "$root/DEBIAN"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@PYTHON@/python$python_version/" \
    -e "s/@SHLIBS@/$shlibs/" -e "s/@INSTALLED_SIZE@/$(du -sk "$root" | cut -f1)/" \
    packaging/deb/control.in >"$root/DEBIAN/control"
install -m 0644 packaging/deb/conffiles "$root/DEBIAN/conffiles"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"

package=$out/nbedge_${version}_${arch}.deb
# zstd: a fraction of xz's time on a Pi, and Bookworm's dpkg reads it.
dpkg-deb --root-owner-group -Zzstd -z9 --build "$root" "$package" >/dev/null
rm -rf "$stage"
echo "nbedge: built $package"
