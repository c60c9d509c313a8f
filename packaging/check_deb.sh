#!/usr/bin/env bash
# Install the amd64 package into clean Debian roots and check what a user relies on.
#
#   sudo packaging/check_deb.sh NEW.deb PREVIOUS.deb [SUITE...]      (default suites: bookworm trixie)
#
# PREVIOUS.deb "-" skips the upgrade. A suite named like bookworm-arm64 is debootstrapped for
# that architecture (it runs under qemu-user where binfmt allows).
#
# For each suite: a pristine debootstrap (minbase: nothing a desktop would add) is copied,
# PREVIOUS.deb is installed with apt (which fetches the Depends from Debian), then NEW.deb is
# installed over it (the upgrade path), and as an ordinary user:
#   mistudio --version; mistudio info; the user's data folder survives the upgrade;
#   PyTorch through the package's own installer (mistudio-setup-torch) from a local index
#     (download.pytorch.org is not reachable from the build machines): $TORCH_INDEX_<suite> is
#     a folder with simple/ (make_simple_index.py) and a file "requirement" (torch==...);
#   the window, started with QT_QPA_PLATFORM=xcb under xvfb-run, screenshotted;
#   the first-run window of a second user with the index unreachable (the offline message);
#   ldd on every Qt plugin and Qt library of the venv: every library resolves;
#   apt-get remove, then purge: /opt/mistudio, the launcher and the menu entry are gone and
#   the user's data folder is kept.
# Needs root, debootstrap, netpbm (xwdtopnm) and the Debian mirror. Work happens under $CACHE (default
# /work/pkgcache); screenshots and the log go to $OUT (default $CACHE/check-out).
set -euo pipefail
NEW=$(realpath "${1:?usage: check_deb.sh NEW.deb PREVIOUS.deb [SUITE...]}")
OLD="${2:?usage: check_deb.sh NEW.deb PREVIOUS.deb [SUITE...]}"
[ "$OLD" = "-" ] || OLD=$(realpath "$OLD")
shift 2
if [ $# -gt 0 ]; then SUITES=("$@"); else SUITES=(bookworm trixie); fi
CACHE=${CACHE:-/work/pkgcache}
OUT=${OUT:-$CACHE/check-out}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
mkdir -p "$OUT" "$CACHE/base" "$CACHE/roots"
fail=0
to_png() { xwdtopnm "$1" 2>/dev/null | pnmtopng > "$2" || true; }  # netpbm
say() { printf '%s\n' "$*" | tee -a "$OUT/summary.txt"; }
: > "$OUT/summary.txt"

mounted=()
cleanup() {
    for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done
}
trap cleanup EXIT

for suite in "${SUITES[@]}"; do
    base="$CACHE/base/$suite"
    if [ ! -x "$base/usr/bin/apt-get" ]; then
        arch_flag=""
        [[ "$suite" == *-arm64 ]] && arch_flag="--arch=arm64"
        debootstrap $arch_flag --variant=minbase "${suite%-arm64}" "$base" "$MIRROR" > "$CACHE/base/$suite.log"
    fi
    root="$CACHE/roots/$suite"
    for m in dev/pts dev proc sys; do umount -l "$root/$m" 2>/dev/null || true; done
    rm -rf "$root"
    cp -a "$base" "$root"
    for m in proc sys dev dev/pts; do
        mount --bind "/$m" "$root/$m"
        mounted=("$root/$m" "${mounted[@]}")
    done
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    [ "$OLD" = "-" ] || cp "$OLD" "$root/tmp/previous.deb"
    cp "$NEW" "$root/tmp/new.deb"
    index_var="TORCH_INDEX_${suite//-/_}"
    if [ -n "${!index_var:-}" ]; then
        mkdir -p "$root/tmp/torch-index"
        cp -a "${!index_var}/." "$root/tmp/torch-index/"
    fi
    in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"; }
    as_user() { local u=$1; shift; chroot --userspec="$u:$u" "$root" /usr/bin/env -i \
        PATH=/usr/bin:/bin HOME="/home/$u" USER="$u" LANG=C.UTF-8 "$@"; }
    log="$OUT/$suite.log"
    : > "$log"
    say "== $suite (Debian $(cat "$root/etc/debian_version"), $(uname -m) host, root arch $(in_root dpkg --print-architecture))"
    in_root apt-get update -qq >> "$log" 2>&1
    # test tools (not what the package needs: those come from its Depends)
    in_root apt-get install -y -qq --no-install-recommends xvfb xauth x11-utils x11-apps >> "$log" 2>&1
    in_root useradd -m tester
    in_root useradd -m second
    data=/home/tester/.local/share/mistudio
    if [ "$OLD" != "-" ]; then
        t0=$(date +%s)
        in_root apt-get install -y -qq --no-install-recommends /tmp/previous.deb >> "$log" 2>&1
        t1=$(date +%s)
        say "install previous ($(dpkg-deb -f "$OLD" Version)) with its Depends: $((t1 - t0)) s"
        as_user tester mistudio --version | tee -a "$OUT/summary.txt"
        # the user's data, made by the previous version, must survive the upgrade and the removal
        as_user tester mistudio jobs list >> "$log" 2>&1 || true
        [ -f "$root$data/mistudio.db" ] || { say "FAIL: no data folder after the first run"; fail=1; }
        t0=$(date +%s)
        in_root apt-get install -y -qq --no-install-recommends /tmp/new.deb >> "$log" 2>&1
        t1=$(date +%s)
        say "upgrade to $(dpkg-deb -f "$NEW" Version): $((t1 - t0)) s (unpack, then postinst rebuilds the venv)"
    else
        t0=$(date +%s)
        in_root apt-get install -y -qq --no-install-recommends /tmp/new.deb >> "$log" 2>&1
        t1=$(date +%s)
        say "install $(dpkg-deb -f "$NEW" Version) with its Depends: $((t1 - t0)) s"
        as_user tester mistudio jobs list >> "$log" 2>&1 || true
    fi
    t0=$(date +%s)
    in_root /var/lib/dpkg/info/mistudio.postinst configure >> "$log" 2>&1
    say "postinst alone (venv from the wheels, $(in_root python3 --version)): $(( $(date +%s) - t0 )) s"
    ver=$(as_user tester mistudio --version)
    say "$ver"
    [ "$ver" = "mistudio $(dpkg-deb -f "$NEW" Version | cut -d- -f1)" ] || { say "FAIL: version"; fail=1; }
    [ -f "$root$data/mistudio.db" ] || { say "FAIL: data folder lost in the upgrade"; fail=1; }
    say "venv: $(du -sh "$root/opt/mistudio/venv" | cut -f1), package files: $(du -sh "$root/opt/mistudio/wheels" | cut -f1)"
    # PyTorch the way a user gets it, from a local index standing in for download.pytorch.org
    if [ -d "$root/tmp/torch-index" ]; then
        t0=$(date +%s)
        spec="$(cat "$root/tmp/torch-index/requirement") --index-url file:///tmp/torch-index/simple"
        as_user tester env MISTUDIO_TORCH="$spec" mistudio-setup-torch >> "$log" 2>&1 \
            || { say "FAIL: torch setup"; fail=1; }
        say "torch layer via mistudio-setup-torch: $(( $(date +%s) - t0 )) s, $(du -sh "$root/home/tester/.local/share/mistudio-runtime" | cut -f1)"
    else
        say "no local torch index for $suite: the window check runs without PyTorch"
    fi
    as_user tester mistudio info 2>&1 | tee -a "$OUT/summary.txt" || { say "FAIL: info"; fail=1; }
    # the window under X11 (xcb), as it starts from the menu, on an 1400x900 virtual screen
    cat > "$root/tmp/shot.sh" <<'EOF'
#!/bin/sh
# start the app, wait for its window, screenshot the screen
QT_QPA_PLATFORM=xcb "$@" > /tmp/app-$USER.log 2>&1 &
app=$!
i=0
while [ $i -lt 120 ]; do
    if xwininfo -root -tree | grep -q "$WAIT_FOR"; then break; fi
    sleep 1; i=$((i + 1))
done
sleep 5
xwininfo -root -tree | grep -q "$WAIT_FOR" && xwd -root -silent > "/tmp/shot-$USER.xwd"
kill $app 2>/dev/null
wait $app 2>/dev/null
true
EOF
    chmod +x "$root/tmp/shot.sh"
    rm -f "$root"/tmp/shot-*.xwd
    as_user tester env WAIT_FOR='"MechInterp Studio' MISTUDIO_SKIP_TORCH_SETUP=1 \
        xvfb-run -a -s "-screen 0 1400x900x24" /tmp/shot.sh mistudio >> "$log" 2>&1 || true
    if [ -f "$root/tmp/shot-tester.xwd" ]; then
        to_png "$root/tmp/shot-tester.xwd" "$OUT/$suite-window.png"
        say "window: $OUT/$suite-window.png"
    else
        say "FAIL: no window appeared (app log below)"; cat "$root/tmp/app-tester.log" | tail -20 | tee -a "$OUT/summary.txt"; fail=1
    fi
    # a second user: the first-run window; download.pytorch.org is unreachable from here, so it
    # shows the offline message a user without network sees
    as_user second env WAIT_FOR='first start' \
        xvfb-run -a -s "-screen 0 900x500x24" /tmp/shot.sh mistudio >> "$log" 2>&1 || true
    if [ -f "$root/tmp/shot-second.xwd" ]; then
        to_png "$root/tmp/shot-second.xwd" "$OUT/$suite-first-run-offline.png"
        say "first-run window (offline): $OUT/$suite-first-run-offline.png"
    else
        say "FAIL: no first-run window"; tail -20 "$root/tmp/app-second.log" | tee -a "$OUT/summary.txt"; fail=1
    fi
    # every Qt plugin and library of the venv finds its libraries. Two kinds cannot, by design,
    # and are counted apart: plugins of Qt modules that PySide6-Essentials does not ship (they
    # come with PySide6-Addons: designer, QML 3D, PDF, virtual keyboard; the app uses none),
    # and the SQL drivers of database clients (the app uses Python's sqlite3, not Qt SQL).
    # (with the venv's Qt, PySide6 and shiboken libraries on the path, as they are in the
    # process by the time Qt loads a plugin)
    in_root sh -c 'qt=$(dirname $(find /opt/mistudio/venv -path "*PySide6/Qt/lib" -type d | head -1))
        export LD_LIBRARY_PATH="$qt/lib:$(dirname $qt):$(dirname $(dirname $qt))/shiboken6"
        for f in $(find "$qt" -name "*.so*" -type f); do
            ldd "$f" 2>/dev/null | awk -v f="$f" "/not found/ {print f, \$1}"; done' \
        | sort -u > "$OUT/$suite-ldd-missing.txt"
    nfiles=$(in_root sh -c 'find /opt/mistudio/venv -path "*PySide6/Qt/*" -name "*.so*" -type f | wc -l')
    nplugins=$(in_root sh -c 'find /opt/mistudio/venv -path "*PySide6/Qt/plugins/*" -name "*.so" | wc -l')
    addons=0; dbclients=0; bad=""
    while read -r file lib; do
        if [[ "$lib" == libQt6* ]] && ! in_root sh -c "find /opt/mistudio/venv -name '$lib' | grep -q ."; then
            addons=$((addons + 1))
        elif [[ "$file" == */plugins/sqldrivers/* ]]; then
            dbclients=$((dbclients + 1))
        else
            bad="$bad$file: $lib"$'\n'
        fi
    done < "$OUT/$suite-ldd-missing.txt"
    if [ -n "$bad" ]; then
        say "FAIL: unresolved libraries:"; say "$bad"; fail=1
    else
        say "ldd: $nfiles Qt libraries and plugins ($nplugins plugins): every system library resolves;" \
            "not resolvable by design: $addons links to Qt modules of PySide6-Addons, $dbclients to database clients (see $suite-ldd-missing.txt)"
    fi
    in_root apt-get remove -y -qq mistudio >> "$log" 2>&1
    left=$(in_root sh -c 'ls -d /opt/mistudio /usr/bin/mistudio /usr/share/applications/mistudio.desktop 2>/dev/null' || true)
    [ -z "$left" ] || { say "FAIL: left after remove: $left"; fail=1; }
    in_root apt-get purge -y -qq mistudio >> "$log" 2>&1
    if in_root dpkg -s mistudio > /dev/null 2>&1; then say "FAIL: still known to dpkg after purge"; fail=1; fi
    [ -f "$root$data/mistudio.db" ] && say "removed and purged: /opt/mistudio gone, user data kept ($data)" \
        || { say "FAIL: user data removed"; fail=1; }
    for m in dev/pts dev proc sys; do umount -l "$root/$m" 2>/dev/null || true; done
    mounted=()
done
[ $fail -eq 0 ] && say "ALL CHECKS PASSED" || say "SOME CHECKS FAILED"
exit $fail
