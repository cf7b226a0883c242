#!/usr/bin/env bash
# End-to-end test of the Dioxus desktop example, in real windows on a virtual X display:
# two instances of one private group (`--secret`; two database files, the second
# bootstrapping to the first, mDNS off), a task typed into the first window with xdotool,
# and screenshots of both windows.
# The second window's pixels are read back with OCR; the script fails (exit 1) when the
# task does not show there within $E2E_TIMEOUT seconds (default 30).
#
#   examples/dioxus-tasks/e2e.sh        # screenshots in examples/dioxus-tasks/screenshots/
#
# Installs what it needs with apt-get (as root, or through sudo).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
shots="${E2E_SCREENSHOTS:-$here/screenshots}"
timeout="${E2E_TIMEOUT:-30}"
title="Buy oat milk"

log() { echo "e2e: $*" >&2; }

# --- system packages --------------------------------------------------------------------
packages=(pkg-config libwebkit2gtk-4.1-dev libgtk-3-dev libxdo-dev libsoup-3.0-dev
          libjavascriptcoregtk-4.1-dev xvfb xdotool imagemagick tesseract-ocr)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- build -------------------------------------------------------------------------------
log "building the example"
(cd "$root" && cargo build -q -p wavesync-dioxus-tasks)
target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
bin="$target_dir/debug/dioxus-tasks"

# --- run ---------------------------------------------------------------------------------
work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

display_number=$((90 + RANDOM % 400))
Xvfb ":$display_number" -screen 0 1024x600x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
pids+=($!)
export DISPLAY=":$display_number"
for _ in $(seq 50); do xdotool getdisplaygeometry >/dev/null 2>&1 && break; sleep 0.1; done

# WebKitGTK on a virtual display: no GPU, no DMA-BUF.
export WEBKIT_DISABLE_COMPOSITING_MODE=1 WEBKIT_DISABLE_DMABUF_RENDERER=1 LIBGL_ALWAYS_SOFTWARE=1
port=$((20000 + RANDOM % 20000))
topic="e2e-$$-$RANDOM"
# A fresh private group: both windows take the same secret (64 hex digits).
secret="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
export RUST_LOG="${RUST_LOG:-info}"
"$bin" --db "$work/a.db" --topic "$topic" --no-mdns --title "Tasks A" --secret "$secret" \
    --listen "/ip4/127.0.0.1/tcp/$port" >"$work/a.log" 2>&1 &
pids+=($!)
"$bin" --db "$work/b.db" --topic "$topic" --no-mdns --title "Tasks B" --secret "$secret" \
    --peer "/ip4/127.0.0.1/tcp/$port" >"$work/b.log" 2>&1 &
pids+=($!)

window() { # window <title>: the window's id, once it is mapped (at most 30 s)
    for _ in $(seq 300); do
        id="$(xdotool search --onlyvisible --name "^$1\$" 2>/dev/null | head -n1 || true)"
        [[ -n "$id" ]] && { echo "$id"; return 0; }
        sleep 0.1
    done
    log "window '$1' did not appear; logs:"; tail -n 20 "$work"/*.log >&2; return 1
}
a="$(window "Tasks A")"
b="$(window "Tasks B")"
xdotool windowmove "$a" 0 0
xdotool windowmove "$b" 520 0

text_of() { # text_of <window> <png>: screenshot the window, print what OCR reads in it
    import -window "$1" "$2"
    convert "$2" -resize 200% "$work/ocr.png"
    tesseract "$work/ocr.png" - 2>/dev/null | tr -s ' '
}
wait_for_text() { # wait_for_text <window> <png> <regex> <seconds>
    local deadline=$((SECONDS + $4))
    while ((SECONDS < deadline)); do
        text_of "$1" "$2" | grep -Eiq "$3" && return 0
        sleep 0.5
    done
    return 1
}

# The windows are drawn once the status line shows; then wait (bounded) for the peers to
# connect, so the screenshots show the live peer count too.
wait_for_text "$a" "$work/a.png" "peer" "$timeout" || { log "window A never rendered"; exit 1; }
wait_for_text "$b" "$work/b.png" "peer" "$timeout" || { log "window B never rendered"; exit 1; }
wait_for_text "$b" "$work/b.png" "1 peer" "$timeout" || log "B shows no connected peer yet; going on"

start=$SECONDS
log "typing '$title' into window A"
xdotool mousemove --window "$a" 150 35 click 1
sleep 0.3
xdotool type --delay 100 "$title"
xdotool key Return

status=0
if wait_for_text "$b" "$work/b.png" "oat milk" "$timeout"; then
    log "window B shows the task after $((SECONDS - start)) s"
else
    log "FAIL: window B does not show '$title' after $timeout s; it reads:"
    text_of "$b" "$work/b.png" >&2
    status=1
fi
wait_for_text "$a" "$work/a.png" "oat milk" 5 || { log "FAIL: window A does not show the task"; status=1; }

# Both ran as a private group: their logs (RUST_LOG, through the tracing subscriber)
# say so, and neither warned of an open group.
for side in a b; do
    grep -q "private group" "$work/$side.log" \
        || { log "FAIL: window ${side^^} did not log a private group:"; tail -n 20 "$work/$side.log" >&2; status=1; }
    if grep -q "open group" "$work/$side.log"; then
        log "FAIL: window ${side^^} warned of an open group despite --secret"; status=1
    fi
done

mkdir -p "$shots"
cp "$work/a.png" "$shots/window-a.png"
cp "$work/b.png" "$shots/window-b.png"
import -window root -crop 980x420+0+0 "$shots/both-windows.png"
log "screenshots in $shots"
exit $status
