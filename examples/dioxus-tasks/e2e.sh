#!/usr/bin/env bash
# End-to-end test of the Dioxus desktop example, in real windows on a virtual X display:
# two instances of one private group (`--secret`; two database files, the second
# bootstrapping to the first, mDNS off), driven with xdotool, read back with OCR. Each
# window adds, ticks done and deletes a task, and the other window must show it:
#
#   A adds "Buy oat milk"       -> B shows it      B adds "Call the plumber" -> A shows it
#   B ticks "oat milk" done     -> A shows "done"  A ticks "plumber" done    -> B shows "done"
#   A deletes "oat milk"        -> B loses it      B deletes "plumber"       -> A loses it
#
# A check that something is gone first saw it present, and wants two readings in a row
# without it in which OCR did read the window (its status line). Each wait is bounded by
# $E2E_TIMEOUT seconds (default 30); the script fails (exit 1) at the first check that
# times out. The windows' rows are found by OCR (the word's position), not hard-coded.
#
#   examples/dioxus-tasks/e2e.sh        # screenshots in examples/dioxus-tasks/screenshots/
#
# Installs what it needs with apt-get (as root, or through sudo).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
shots="${E2E_SCREENSHOTS:-$here/screenshots}"
timeout="${E2E_TIMEOUT:-30}"

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

window() { # window <title>: the window's id, once it is mapped (at most $timeout s)
    for _ in $(seq $((timeout * 10))); do
        id="$(xdotool search --onlyvisible --name "^$1\$" 2>/dev/null | head -n1 || true)"
        [[ -n "$id" ]] && { echo "$id"; return 0; }
        sleep 0.1
    done
    log "window '$1' did not appear; logs:"; tail -n 20 "$work"/*.log >&2; return 1
}
a="$(window "Tasks A")"
# B starts once A's window is up, and so A listens (the database, its engine included,
# opens before the window): B dials its bootstrap address once, at start.
"$bin" --db "$work/b.db" --topic "$topic" --no-mdns --title "Tasks B" --secret "$secret" \
    --peer "/ip4/127.0.0.1/tcp/$port" >"$work/b.log" 2>&1 &
pids+=($!)
b="$(window "Tasks B")"
xdotool windowmove "$a" 0 0
xdotool windowmove "$b" 520 0

shot() { # shot <window> <png>: screenshot the window; <png>.ocr.png is the OCR input
    import -window "$1" "$2"
    # Twice the size, black on white: tesseract reads small, grey and coloured text
    # (a done task, its green mark, the status line) better so.
    convert "$2" -resize 200% -colorspace Gray -threshold 75% "$2.ocr.png"
}
text_of() { # text_of <window> <png>: screenshot the window, print what OCR reads in it
    shot "$1" "$2"
    tesseract "$2.ocr.png" - 2>/dev/null | tr -s ' '
}
wait_for_text() { # wait_for_text <window> <png> <regex> [seconds]: until OCR reads it
    local deadline=$((SECONDS + ${4:-$timeout}))
    while ((SECONDS < deadline)); do
        text_of "$1" "$2" | grep -Eiq "$3" && return 0
        sleep 0.5
    done
    return 1
}
wait_for_gone() { # wait_for_gone <window> <png> <regex>: until two readings in a row
    # that show the status line ("task(s)": OCR did read the window) lack <regex>.
    local deadline=$((SECONDS + timeout)) clear=0 text
    while ((SECONDS < deadline)); do
        text="$(text_of "$1" "$2")"
        if grep -Eiq 'task\(s\)' <<<"$text" && ! grep -Eiq "$3" <<<"$text"; then
            clear=$((clear + 1))
            ((clear >= 2)) && return 0
        else
            clear=0
        fi
        sleep 0.5
    done
    return 1
}

fail() { # fail <message> <window> <png>: what the window reads, then exit 1
    log "FAIL: $1; it reads:"
    text_of "$2" "$3" >&2 || true
    for side in a b; do
        log "window ${side^^}'s log ends:"
        tail -n 15 "$work/$side.log" | sed 's/\x1b\[[0-9;]*m//g' >&2
    done
    save_screenshots
    exit 1
}
declare -A seen=() # "<name> <regex>" once `expect` saw it: what `expect_gone` may check
expect() { # expect <window> <name> <regex> <what>: the window shows <regex>, or fail
    local png="$work/${2,,}.png" start=$SECONDS
    if wait_for_text "$1" "$png" "$3"; then
        log "window $2 shows $4 after $((SECONDS - start)) s"
        seen["$2 $3"]=1
    else
        fail "window $2 does not show $4 after $timeout s" "$1" "$png"
    fi
}
expect_gone() { # expect_gone <window> <name> <regex> <what>: <regex>, seen before, is gone
    local png="$work/${2,,}.png" start=$SECONDS
    # A check that cannot fail proves nothing: the window must have shown it.
    [[ -n "${seen["$2 $3"]:-}" ]] || { log "BUG in e2e.sh: window $2 was never seen with '$3'"; exit 1; }
    if wait_for_gone "$1" "$png" "$3"; then
        log "window $2 no longer shows $4 after $((SECONDS - start)) s"
    else
        fail "window $2 still shows $4 after $timeout s" "$1" "$png"
    fi
}

row_y() { # row_y <window> <word>: the y (in the window) of the first word OCR reads as <word>
    local png="$work/row.png" deadline=$((SECONDS + timeout)) y
    while ((SECONDS < deadline)); do
        shot "$1" "$png"
        # TSV: level ... left top width height conf text; level 5 is a word. Halve: 200%.
        y="$(tesseract "$png.ocr.png" - tsv 2>/dev/null | awk -F'\t' -v w="$2" \
            '$1 == 5 && tolower($12) ~ w { print int(($8 + $10 / 2) / 2); exit }')"
        [[ -n "$y" ]] && { echo "$y"; return 0; }
        sleep 0.5
    done
    return 1
}
click_row() { # click_row <window> <name> <word> toggle|delete: click in the row of <word>
    local y x width
    y="$(row_y "$1" "$3")" || fail "window $2 shows no row with '$3'" "$1" "$work/${2,,}.png"
    # The checkbox is the row's first element (after the 16 px margin), the delete
    # button its last, right-aligned.
    eval "$(xdotool getwindowgeometry --shell "$1")"
    width="$WIDTH"
    case "$4" in
        toggle) x=24 ;;
        delete) x=$((width - 30)) ;;
    esac
    log "window $2: $4 '$3' (click at $x,$y)"
    xdotool mousemove --window "$1" "$x" "$y" click 1
}
add_task() { # add_task <window> <name> <title>: type the title into the window, Enter
    log "window $2: typing '$3'"
    xdotool mousemove --window "$1" 150 35 click 1
    sleep 0.3
    xdotool type --delay 100 "$3"
    xdotool key Return
}

save_screenshots() { # save_screenshots [name]: both windows side by side, as <name>.png
    # (default "failed"), and the last screenshot of each window
    local name="${1:-failed}"
    mkdir -p "$shots"
    import -window root -crop 980x420+0+0 "$shots/$name.png" || true
    if [[ $name != both-windows-emptied ]]; then
        [[ -f "$work/a.png" ]] && cp "$work/a.png" "$shots/window-a.png"
        [[ -f "$work/b.png" ]] && cp "$work/b.png" "$shots/window-b.png"
    fi
    log "screenshots in $shots ($name.png)"
}

# The windows are drawn once the status line shows; then the peers connect.
wait_for_text "$a" "$work/a.png" "peer" || { log "window A never rendered"; exit 1; }
wait_for_text "$b" "$work/b.png" "peer" || { log "window B never rendered"; exit 1; }
expect "$b" B "1 peer" "A connected"

# Add: each window adds one, the other shows it.
add_task "$a" A "Buy oat milk"
expect "$b" B "oat milk" "A's task"
expect "$a" A "oat milk" "its own task"
add_task "$b" B "Call the plumber"
expect "$a" A "plumber" "B's task"
expect "$b" B "plumber" "its own task"
# Under the list, each window shows its peer and how the connection travels.
expect "$a" A "direct" "B as a direct peer"
expect "$b" B "direct" "A as a direct peer"

# Toggle: each window ticks the other's task done (the row then reads "done").
click_row "$b" B "oat" toggle
expect "$a" A "oat milk.*done" "'oat milk' done (ticked in B)"
expect "$b" B "oat milk.*done" "'oat milk' done"
click_row "$a" A "plumber" toggle
expect "$b" B "plumber.*done" "'plumber' done (ticked in A)"
expect "$a" A "plumber.*done" "'plumber' done"
save_screenshots both-windows

# Delete: each window deletes a task, the other loses it (and keeps the rest). Both
# windows showed both tasks above: the checks that they are gone can fail.
click_row "$a" A "oat" delete
expect_gone "$b" B "oat milk" "'oat milk' (deleted in A)"
expect "$b" B "plumber" "'plumber' still"
expect_gone "$a" A "oat milk" "'oat milk'"
click_row "$b" B "plumber" delete
expect_gone "$a" A "plumber" "'plumber' (deleted in B)"
expect "$a" A "0 task" "an empty list"
expect_gone "$b" B "plumber" "'plumber'"

status=0
# Both ran as a private group: their logs (RUST_LOG, through the tracing subscriber)
# say so, and neither warned of an open group.
for side in a b; do
    grep -q "private group" "$work/$side.log" \
        || { log "FAIL: window ${side^^} did not log a private group:"; tail -n 20 "$work/$side.log" >&2; status=1; }
    if grep -q "open group" "$work/$side.log"; then
        log "FAIL: window ${side^^} warned of an open group despite --secret"; status=1
    fi
done

# The per-window shots stay those of the toggled state, the most telling.
save_screenshots both-windows-emptied
((status == 0)) && log "passed: add, toggle and delete synced both ways"
exit $status
